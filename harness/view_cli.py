"""`harness view RESULTS_DIR... -o report.html`: the results as one self-contained static HTML file.

The file opens from disk in any current browser (no server, no network: data, style, script and plots are
inline); `--open` opens it in the default browser, `--serve PORT` serves it on 127.0.0.1 until Ctrl-C.
"""

from __future__ import annotations

import sys
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated

import typer

from harness.errors import HarnessError


def make_server(report: Path, port: int) -> ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1:port that serves the report at / (and at /<its name>), nothing else."""
    target = report.resolve()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            if self.path.split("?", 1)[0] not in ("/", f"/{target.name}"):
                self.send_error(404, "only the report is served here")
                return
            body = target.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    try:
        return ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as e:
        raise HarnessError(f"--serve {port}: cannot listen on 127.0.0.1:{port} ({e.strerror or e})") from None


def view(
    results_dir: Annotated[list[Path], typer.Argument(help="Results directories (searched for results.json, samples, "
                                                           "judgments, forgetting reports, sweeps).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path("report.html"),
    open_browser: Annotated[bool, typer.Option("--open", help="Open the report in the default browser.")] = False,
    serve: Annotated[int | None, typer.Option("--serve", metavar="PORT",
                                              help="Serve the report on 127.0.0.1:PORT until Ctrl-C (0: any free port).")
                     ] = None,
    title: Annotated[str, typer.Option(help="The report's title.")] = "harness report",
) -> None:
    """Leaderboard with paired tests, per-task settings and intervals, samples browser, flips, checkpoint
    trajectories, judges, forgetting reports and sweeps: one static HTML file."""
    from harness.reports.build import build
    from harness.reports.html import size_text, write

    if output.exists() and output.is_dir():
        raise HarnessError(f"-o {output}: is a directory; give the HTML file to write")
    if serve is not None and not 0 <= serve <= 65535:
        raise HarnessError(f"--serve {serve}: not a port (0-65535)")
    server = make_server(output, serve) if serve is not None else None  # a taken port fails before any work
    try:
        report = build(list(results_dir))
        size = write(report, output, title)
    except BaseException:
        if server is not None:
            server.server_close()
        raise
    print(f"wrote {output} ({size_text(size)})", file=sys.stderr)
    if open_browser:
        webbrowser.open(output.resolve().as_uri())
    if server is not None:
        print(f"serving {output} on http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)", file=sys.stderr)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


def register(app: typer.Typer) -> None:
    app.command("view")(view)
