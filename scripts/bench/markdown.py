"""Number formats for the rendered reports (the templates' filters). Every formatter
takes None for "not measured" and says so ("n/a"), so a missing system or a failed run
shows as such instead of raising while rendering."""
from typing import Dict, Optional

NA = "n/a"


def ratio(num: Optional[float], den: Optional[float]) -> Optional[float]:
    """num / den; None when either is missing or den is not positive."""
    return None if num is None or den is None or den <= 0 else num / den


def fmt_int(value: Optional[float]) -> str:
    """12,345 (rounded)."""
    return NA if value is None else f"{value:,.0f}"


def fmt_f1(value: Optional[float]) -> str:
    return NA if value is None else f"{value:.4f}"


def fmt_x(value: Optional[float], digits: int = 2) -> str:
    return NA if value is None else f"{value:.{digits}f}"


def fmt_pct(value: Optional[float]) -> str:
    return NA if value is None else f"{value:.1%}"


def fmt_points(value: Optional[float]) -> str:
    """A signed difference in F1 points (0.01 F1 = 1 point)."""
    return NA if value is None else f"{value:+.2f}"


def fmt_threshold(value: float) -> str:
    return f"{value:g}"


def fmt_layer(value: Optional[float]) -> str:
    return NA if value is None else f"{value:.2f}"


def fmt_shares(share: Dict[str, float]) -> str:
    return " ".join(f"L{k}:{v:.0%}" for k, v in share.items())


def fmt_duration(seconds: Optional[float]) -> str:
    """58.1s, 7m46s, 1h02m03s."""
    if seconds is None:
        return NA
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s"


def fmt_minutes(seconds: float) -> str:
    """14 min 35 s (prose)."""
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs} s"
