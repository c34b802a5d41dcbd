"""Deterministic E2E "system outputs" the parity tests and the bench score (written by this project, not data copies)."""

from __future__ import annotations

import re

_EAT = {"coffee shop": "coffee shop", "pub": "pub", "restaurant": "restaurant"}


def template_output(mr: str) -> str:
    """A rule-based realisation of one E2E meaning representation (`name[X], eatType[Y], ...`)."""
    a = dict(re.findall(r"(\w+)\[([^\]]*)\]", mr))
    name = a.get("name", "It")
    eat = _EAT.get(a.get("eatType", ""), "place")
    parts = [f"{name} is a {a['food']} {eat}" if "food" in a else f"{name} is a {eat}"]
    if "area" in a:
        parts.append(f"in the {a['area']}")
    if "near" in a:
        parts.append(f"near {a['near']}")
    s = " ".join(parts) + "."
    extra = []
    if "priceRange" in a:
        p = a["priceRange"]
        extra.append(f"It has a price range of {p}" if "£" in p else f"Its prices are {p}")
    if "customer rating" in mr:
        r = re.search(r"customer rating\[([^\]]*)\]", mr).group(1)
        extra.append(f"a customer rating of {r}")
    if "familyFriendly" in a:
        extra.append("it's family-friendly" if a["familyFriendly"] == "yes" else "it isn't family-friendly")
    if extra:
        s += " " + ", and ".join(extra) + "."
    return s
