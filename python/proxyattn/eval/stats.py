"""Statistics of an accuracy cell: Wilson intervals and the exact McNemar test. Plain Python."""
import math
from fractions import Fraction

Z95 = 1.959963984540054  # the two-sided 95% normal quantile


def wilson(k, n, z=Z95):
    """95% Wilson score interval (low, high) of k successes in n trials; (0, 0) when n = 0."""
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def mcnemar_exact(lost, won):
    """Exact two-sided McNemar p-value: the binomial test of the discordant pairs (lost = dense
    right and the method wrong, won = the reverse) against p = 1/2; 1 when there are none."""
    n = int(lost) + int(won)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(lost, won) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2 ** n)))


def paired(dense_correct, method_correct):
    """(lost, won) of paired per-prompt outcomes (sequences of bools in the same prompt order)."""
    if len(dense_correct) != len(method_correct):
        raise ValueError("paired outcomes need the same prompts")
    lost = sum(1 for d, m in zip(dense_correct, method_correct) if d and not m)
    won = sum(1 for d, m in zip(dense_correct, method_correct) if m and not d)
    return lost, won


def cell_stats(correct, partial, dense_correct=None):
    """The accuracy fields of one cell from per-prompt outcomes (correct: bools, partial: fractions
    of answers found) and, when given, dense's outcomes on the same prompts."""
    n = len(correct)
    k = sum(1 for c in correct if c)
    lo, hi = wilson(k, n)
    out = {"n": n, "correct": k, "accuracy": k / n if n else float("nan"), "ci_low": lo,
           "ci_high": hi, "partial": (sum(partial) / n) if n else float("nan")}
    if dense_correct is not None:
        lost, won = paired(dense_correct, correct)
        out.update(dense_accuracy=sum(1 for c in dense_correct if c) / n if n else float("nan"),
                   lost=lost, won=won, p_value=mcnemar_exact(lost, won))
    return out
