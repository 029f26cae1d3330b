"""Plots of eval, compare and robustness results, each a matplotlib ``Figure``.

Figures are built without pyplot's global state, so a script or an MLflow logger can call them
in a loop (``mlflow.log_figure(pg.plot.pareto(df), "pareto.png")``) and a notebook shows the one
a cell returns. matplotlib comes with the ``notebooks`` extra.

    >>> import promptgov as pg                                              # doctest: +SKIP
    >>> r = pg.evaluate("ticket_triage@2")                                  # doctest: +SKIP
    >>> pg.plot.reliability(r); pg.plot.confusion(r, top=12)                # doctest: +SKIP
    >>> pg.plot.pareto(pg.compare("ticket_triage"))                         # doctest: +SKIP
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["automation", "confusion", "pareto", "reliability", "robustness"]


def _figure(w: float = 6.0, h: float = 4.0,
            layout: Literal["constrained"] | None = "constrained") -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("promptgov.plot needs matplotlib (fix: pip install "
                          "'promptgov[notebooks]')") from None
    _show_in_notebooks()
    return Figure(figsize=(w, h), layout=layout)


def _show_in_notebooks() -> None:
    """In IPython, show a returned Figure as an image (a Figure made without pyplot has only
    a text repr until the shell registers the PNG formatter, as ``%matplotlib inline`` does)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or getattr(shell, "_promptgov_png", False):
        return
    from IPython.core.pylabtools import select_figure_formats

    select_figure_formats(shell, {"png"})  # type: ignore[no-untyped-call]  # IPython: untyped
    shell._promptgov_png = True


def _cases(result: Any) -> pd.DataFrame:
    """The per-case frame of an ``EvalResult`` (or a frame given as it is)."""
    return result.cases if hasattr(result, "cases") else result


def _scored(result: Any) -> tuple[list[float], list[bool]]:
    """Confidence and correctness of each answered case that has a confidence."""
    recs = getattr(result, "records", None)  # an EvalResult: no DataFrame needed
    if recs is not None and any("confidence" in r for r in recs):
        got = [(float(r["confidence"]), bool(r["correct"])) for r in recs
               if r.get("confidence") is not None]
        return [c for c, _ in got], [ok for _, ok in got]
    df = _cases(result)
    if "confidence" not in df:
        raise ValueError("no `confidence` column: reliability and routing plots need a "
                         "classification result whose schema has a confidence field")
    df = df[df["confidence"].notna()]
    return df["confidence"].astype(float).tolist(), df["correct"].astype(bool).tolist()


def pareto(runs: pd.DataFrame, *, x: str = "cost_per_1k_usd", y: str = "accuracy",
           title: str | None = None) -> Figure:
    """``y`` against ``x`` per row of ``runs`` (``pg.compare(...)``: one row per version), the
    Pareto front (no other row is both cheaper and better) drawn as a step line."""
    fig = _figure()
    ax = fig.add_subplot()
    pts = sorted((float(r[x]), float(r[y]), str(i)) for i, r in runs.iterrows())
    front, best = [], float("-inf")
    for px, py, name in pts:  # cheapest first: a point is on the front if it beats all cheaper
        if py > best:
            front.append((px, py, name))
            best = py
    on = {p[2] for p in front}
    for px, py, name in pts:
        ax.scatter(px, py, s=60, color="C0" if name in on else "C7", zorder=3)
        ax.annotate(f"v{name}" if name.isdigit() else name, (px, py),
                    textcoords="offset points", xytext=(6, 4))
    ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="C0", alpha=0.6,
            label="Pareto front")
    ax.set(xlabel=x.replace("_", " "), ylabel=y.replace("_", " "),
           title=title or f"{y} against {x}" + (f" · {runs.attrs['prompt']}"
                                                if "prompt" in runs.attrs else ""))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def reliability(result: Any, *, bins: int = 10, title: str | None = None,
                fast: bool = False) -> Figure:
    """Reliability diagram: accuracy against mean confidence per confidence bin (the diagonal is
    perfect calibration), with the cases per bin underneath and the ECE in the title.
    ``fast``: fixed margins instead of matplotlib's constrained layout, which measures every
    label (0.18 s instead of 0.33 s to a PNG; what the MLflow logger draws)."""
    conf, ok = _scored(result)
    rows = _calibration_bins(conf, ok, bins)
    ece = sum(n * abs(acc - mc) for _, _, mc, acc, n in rows) / max(len(conf), 1)
    fig = _figure(5.5, 5.5, layout=None if fast else "constrained")
    if fast:
        fig.subplots_adjust(left=0.12, right=0.97, top=0.94, bottom=0.09, hspace=0.06)
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    top.plot([0, 1], [0, 1], ls="--", color="C7", label="perfect calibration")
    top.bar([lo for lo, *_ in rows], [acc for *_, acc, _ in rows], width=1 / bins,
            align="edge", alpha=0.7, edgecolor="C0", label="accuracy per bin")
    top.plot([mc for _, _, mc, _, _ in rows], [acc for *_, acc, _ in rows], "o-", color="C3",
             label="at mean confidence")
    top.set(ylabel="accuracy", ylim=(0, 1), title=title or f"{_name(result)} · ECE {ece:.3f}")
    top.legend(loc="upper left")
    bottom.bar([lo for lo, *_ in rows], [n for *_, n in rows], width=1 / bins, align="edge",
               color="C7")
    bottom.set(xlabel="confidence", ylabel="cases", xlim=(0, 1))
    return fig


def _calibration_bins(conf: list[float], ok: list[bool], bins: int
                      ) -> list[tuple[float, float, float, float, int]]:
    """``(lo, hi, mean confidence, accuracy, cases)`` of each non-empty bin of ``bins`` equal
    confidence bins (the last one includes 1.0)."""
    edges = [i / bins for i in range(bins + 1)]
    rows = []
    for lo, hi in zip(edges, edges[1:], strict=False):
        idx = [i for i, c in enumerate(conf) if lo <= c < hi or (hi == 1.0 and c == 1.0)]
        if idx:
            rows.append((lo, hi, sum(conf[i] for i in idx) / len(idx),
                         sum(ok[i] for i in idx) / len(idx), len(idx)))
    return rows


def confusion(result: Any, *, top: int = 12, title: str | None = None) -> Figure:
    """Confusion matrix of the ``top`` labels most involved in errors (expected × predicted)."""
    df = _cases(result)
    exp = [e.get("label") if isinstance(e, dict) else e for e in df["expected"]]
    pred = [p if isinstance(p, str) else "(failed)" for p in df["predicted"]]
    labels = _most_confused(exp, pred, top)
    m = _confusion_matrix(exp, pred, labels)
    size = 2.5 + 0.45 * len(labels)
    fig = _figure(size + 1, size)
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap="Blues")
    _label_cells(ax, m)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set(xlabel="predicted", ylabel="expected",
           title=title or f"{_name(result)} · the {len(labels)} most confused labels")
    fig.colorbar(im, ax=ax, shrink=0.7)
    return fig


def _most_confused(exp: list[Any], pred: list[str], top: int) -> list[Any]:
    """The ``top`` labels in the most errors, as expected or as predicted, sorted; without
    errors, the first ``top`` expected labels."""
    errors: Counter[Any] = Counter()
    for e, p in zip(exp, pred, strict=True):
        if e != p:
            errors[e] += 1
            errors[p] += 1
    labels = sorted(lbl for lbl, _ in errors.most_common(top))
    return labels or sorted(set(exp))[:top]


def _confusion_matrix(exp: list[Any], pred: list[str], labels: list[Any]) -> list[list[int]]:
    """Cases per (expected, predicted) pair of ``labels``; other labels are left out."""
    pos = {lbl: i for i, lbl in enumerate(labels)}
    m = [[0] * len(labels) for _ in labels]
    for e, p in zip(exp, pred, strict=True):
        if e in pos and p in pos:
            m[pos[e]][pos[p]] += 1
    return m


def _label_cells(ax: Axes, m: list[list[int]]) -> None:
    """Write each non-zero count in its cell, white on the darker half of the colour scale."""
    for i, row in enumerate(m):
        for j, v in enumerate(row):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                        color="white" if v > max(map(max, m)) / 2 else "black")


def automation(result: Any, *, thresholds: Any = None, auto: float | None = None,
               title: str | None = None) -> Figure:
    """Automation rate (share of cases at or above the threshold) and the precision of those
    cases, as the routing threshold moves; ``auto`` marks the policy's current threshold."""
    conf, ok = _scored(result)
    ts = list(thresholds) if thresholds is not None else [i / 100 for i in range(0, 100)]
    rate, prec = [], []
    for t in ts:
        kept = [o for c, o in zip(conf, ok, strict=True) if c >= t]
        rate.append(len(kept) / max(len(conf), 1))
        prec.append(sum(kept) / len(kept) if kept else float("nan"))
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(ts, rate, color="C0", label="automation rate")
    ax.plot(ts, prec, color="C2", label="precision in the auto band")
    if auto is not None:
        ax.axvline(auto, ls="--", color="C3", label=f"policy auto = {auto:g}")
    ax.set(xlabel="routing threshold (confidence)", ylabel="share of cases", ylim=(0, 1.02),
           title=title or f"{_name(result)} · automation against precision")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    return fig


def robustness(deltas: Any, *, metric: str = "accuracy", title: str | None = None) -> Figure:
    """Clean against noisy ``metric`` per transformation, as paired bars (``r.deltas`` of
    :func:`promptgov.robustness`, or the result itself); worst transformation first."""
    df = deltas.deltas if hasattr(deltas, "deltas") else deltas
    clean, noisy = f"clean_{metric}", f"noisy_{metric}"
    if clean not in df or noisy not in df:
        raise ValueError(f"no {clean}/{noisy} columns (have: {', '.join(map(str, df.columns))})")
    df = df.assign(_d=df[noisy] - df[clean]).sort_values("_d")
    names = [str(i) for i in df.index]
    fig = _figure(max(6.0, 0.7 * len(names) + 2), 4.2)
    ax = fig.add_subplot()
    xs = range(len(names))
    ax.bar([i - 0.2 for i in xs], df[clean], width=0.4, label="clean", color="C0")
    ax.bar([i + 0.2 for i in xs], df[noisy], width=0.4, label="noisy", color="C3")
    for i, d, n in zip(xs, df["_d"], df[noisy], strict=True):  # the delta, in points
        ax.annotate(f"{100 * d:+.1f}", (i + 0.2, n), xytext=(0, 3), textcoords="offset points",
                    ha="center", fontsize=8)
    ax.set_xticks(list(xs), names, rotation=30, ha="right")
    ax.set(ylabel=metric, ylim=(0, 1), title=title or f"{metric}: clean against noisy")
    ax.legend(loc="upper right")
    return fig


def _name(result: Any) -> str:
    return getattr(result, "prompt", None) or "result"
