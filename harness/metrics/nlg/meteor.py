"""METEOR 1.5: the jar pycocoevalcap ships, run with Java as `-l en -norm` over the stdio protocol its wrapper uses."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from harness.errors import HarnessError

JAVA_MISSING = ("METEOR needs Java 8+ to run the METEOR 1.5 jar and `java` was not found on PATH; install Java, or skip "
                "METEOR with --skip-meteor (harness score e2e) or --task-option skip_meteor=1 (harness run)")


def meteor_jar() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        raise HarnessError("METEOR needs the pycocoevalcap package (it ships meteor-1.5.jar): pip install pycocoevalcap")
    jar = Path(list(spec.submodule_search_locations)[0]) / "meteor" / "meteor-1.5.jar"
    if not jar.exists():
        raise HarnessError(f"{jar}: METEOR jar not found in the pycocoevalcap package")
    return jar


def cache_dir() -> Path:
    """$HARNESS_CACHE_DIR, else $XDG_CACHE_HOME/harness, else ~/.cache/harness."""
    if os.environ.get("HARNESS_CACHE_DIR"):
        return Path(os.environ["HARNESS_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "harness"


def _paraphrase_env() -> str:
    """What besides the references decides the filtered table: the jar, and the locale Java decodes the files with."""
    jar = meteor_jar()
    return "|".join([str(jar.stat().st_size), *(os.environ.get(k, "") for k in ("LC_ALL", "LC_CTYPE", "LANG"))])


def _find_cached_table(folder: Path, env: str, lines: set[str]) -> Path | None:
    """A cached table filtered for a superset of these reference lines (as good as an exact one: an entry can only
    match through a phrase of these references, and every such entry is kept), or None."""
    if not folder.is_dir():
        return None
    for refs_file in sorted(folder.glob("*.refs")):
        table = refs_file.with_suffix(".gz")
        if not table.exists():
            continue
        try:
            head, *cached = refs_file.read_text(encoding="utf-8", errors="surrogatepass").split("\n")
        except OSError:
            continue
        if head == env and lines <= set(cached):
            return table
    return None


class ParaphraseFilter:
    """METEOR's own FilterParaphrase tool, run in the background: the paraphrase table cut to the entries whose
    either side occurs in the references (the only ones that can match), cached by reference text.

    Why: loading the full 61 MB table is most of METEOR's cost; the filtered table (METEOR's documented `-a` option)
    loads in a fraction of that and gives the same alignments, hence the same scores (checked in the parity tests).
    """

    def __init__(self, ref_lines: Sequence[str], java: str | None = None) -> None:
        env, unique = _paraphrase_env(), set(ref_lines)
        folder = cache_dir() / "meteor-paraphrase"
        self.proc: subprocess.Popen | None = None
        found = _find_cached_table(folder, env, unique)
        if found is not None:
            self.path = found
            return
        key = hashlib.sha256("\n".join([env, *sorted(unique)]).encode("utf-8", "surrogatepass")).hexdigest()[:32]
        self.path = folder / f"{key}.gz"
        self._listing = "\n".join([env, *sorted(unique)])
        java = java or shutil.which("java")
        if not java:
            raise HarnessError(JAVA_MISSING)
        jar = meteor_jar()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, refs_name = tempfile.mkstemp(suffix=".txt", dir=self.path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(ref_lines) + "\n")
        self._refs = Path(refs_name)
        self._tmp = self.path.with_name(f"{self.path.stem}.{os.getpid()}.tmp.gz")
        table = jar.parent / "data" / "paraphrase-en.gz"
        cmd = [java, "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", str(jar), "FilterParaphrase", str(table),
               str(self._tmp), str(self._refs)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def result(self) -> Path:
        """The filtered table (waits for the filter if it is still running)."""
        if self.proc is not None:
            _, err = self.proc.communicate()
            self._refs.unlink(missing_ok=True)
            if self.proc.returncode != 0 or not self._tmp.exists():
                self._tmp.unlink(missing_ok=True)
                last = err.decode("utf-8", "replace").strip().splitlines()[-1:] if err else []
                raise HarnessError(f"METEOR FilterParaphrase failed: {last[0] if last else 'exit ' + str(self.proc.returncode)}")
            os.replace(self._tmp, self.path)
            listing = self.path.with_suffix(f".{os.getpid()}.tmp")
            listing.write_text(self._listing, encoding="utf-8", errors="surrogatepass")
            os.replace(listing, self.path.with_suffix(".refs"))
            self.proc = None
        return self.path

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self._refs.unlink(missing_ok=True)
            self._tmp.unlink(missing_ok=True)
            self.proc = None


class Meteor:
    """One `java -jar meteor-1.5.jar - - -stdio -l en -norm` process, driven as pycocoevalcap's wrapper drives it.

    Started on construction so the JVM loads its paraphrase table while Python computes the other metrics; `score`
    sends one SCORE line per segment (streamed from a thread instead of one round trip each), then one EVAL line,
    and may be called again for another set (the paraphrase table is loaded once). Close it when done.
    """

    def __init__(self, java: str | None = None, paraphrases: Path | None = None) -> None:
        """`paraphrases`: a filtered paraphrase table (`-a`, see ParaphraseFilter); default: the full English one."""
        java = java or shutil.which("java")
        if not java:
            raise HarnessError(JAVA_MISSING)
        jar = meteor_jar()
        # JVM flags change speed only (Java floating point is strict): the C1 compiler halves METEOR's CPU time on
        # E2E-sized sets; -Xms saves repeated heap growth while the full (~1 GB in memory) paraphrase table loads.
        flags = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xmx2G"]
        cmd = [java, *flags, *(["-Xms1G"] if paraphrases is None else []), "-jar", str(jar), "-", "-", "-stdio",
               "-l", "en", "-norm", *(["-a", str(paraphrases)] if paraphrases is not None else [])]
        try:
            self.proc = subprocess.Popen(cmd, cwd=jar.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE)
        except OSError as e:
            raise HarnessError(f"could not start Java for METEOR ({e}); use --skip-meteor to skip it") from None

    def submit(self, hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> None:
        """Start scoring in the background: a thread writes the SCORE lines, another collects their statistics."""
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        lines = []
        for h, group in zip(hyps, refs):
            h = h.replace("|||", "").replace("  ", " ")
            lines.append(" ||| ".join(("SCORE", " ||| ".join(group), h)) + "\n")
        self._n = len(lines)
        self._stats: list[str] = []

        def feed() -> None:
            try:
                for line in lines:
                    stdin.write(line.encode("utf-8"))
                stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass

        def collect() -> None:
            for _ in lines:
                out = stdout.readline()
                if not out:
                    return
                self._stats.append(out.decode("utf-8").strip())

        self._threads = [threading.Thread(target=feed, daemon=True), threading.Thread(target=collect, daemon=True)]
        for t in self._threads:
            t.start()

    def result(self) -> tuple[float, list[float]]:
        """Corpus METEOR and per-segment scores of the submitted set (one EVAL line over all statistics)."""
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            for t in self._threads:
                t.join()
            if len(self._stats) != self._n:
                err = proc.stderr.read().decode("utf-8", "replace").strip().splitlines() if proc.stderr else []
                raise HarnessError(f"METEOR (java) stopped early: {err[-1] if err else 'no output'}")
            proc.stdin.write(("EVAL ||| " + " ||| ".join(self._stats) + "\n").encode("utf-8"))
            proc.stdin.flush()
            seg = [float(proc.stdout.readline().strip()) for _ in range(self._n)]
            score = float(proc.stdout.readline().strip())
        except BaseException:
            self.close()
            raise
        return score, seg

    def score(self, hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> tuple[float, list[float]]:
        """Corpus METEOR and per-segment scores of tokenized hypotheses against tokenized references."""
        self.submit(hyps, refs)
        return self.result()

    def __enter__(self) -> Meteor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
        except OSError:
            pass
        self.proc.kill()
        self.proc.wait()

