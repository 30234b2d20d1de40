"""Global feature importance by permutation, through the served model on raw rows.

A feature's importance is how much the headline metric drops when that one raw column is
shuffled (its link to the label broken, its distribution kept), averaged over repeats.
Every shuffled copy of every feature is scored in one batched prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["permutation_importance"]


def permutation_importance(
    predict: Callable[[pd.DataFrame], np.ndarray],
    frame: pd.DataFrame,
    y: np.ndarray,
    score: Callable[[np.ndarray, np.ndarray], float],
    *,
    columns: Sequence[str],
    repeats: int = 3,
    max_rows: int = 5000,
    max_total_rows: int = 1_000_000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Drop in ``score(y, predict(frame))`` (higher is better) when each column is shuffled.

    Rows are sampled (seeded) down to ``max_rows``, and further so that all
    ``len(columns) * repeats`` shuffled copies fit in ``max_total_rows``.

    Returns:
        ``[{"feature", "importance", "std"}]``, most important first.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = len(frame)
    if n == 0 or not columns or repeats < 1:
        return []
    cap = max(1, min(max_rows, max_total_rows // max(1, len(columns) * repeats)))
    take = np.sort(rng.choice(n, size=cap, replace=False)) if n > cap else np.arange(n)
    base_frame = frame.iloc[take].reset_index(drop=True)
    y = np.asarray(y)[take]
    m = len(base_frame)
    base = score(y, predict(base_frame))
    blocks = len(columns) * repeats
    big = base_frame.iloc[np.tile(np.arange(m), blocks)].reset_index(drop=True)
    for b, col in enumerate(c for c in columns for _ in range(repeats)):
        rows = slice(b * m, (b + 1) * m)
        values = base_frame[col].to_numpy()[rng.permutation(m)]
        big.loc[rows.start : rows.stop - 1, col] = pd.Series(
            values, index=range(rows.start, rows.stop)
        )
    out = predict(big)
    drops = np.empty((len(columns), repeats))
    for b in range(blocks):
        drops[b // repeats, b % repeats] = base - score(y, out[b * m : (b + 1) * m])
    result = [
        {"feature": str(c), "importance": float(drops[i].mean()), "std": float(drops[i].std())}
        for i, c in enumerate(columns)
    ]
    return sorted(result, key=lambda r: -r["importance"])
