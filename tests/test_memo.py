from edgeproxy.memo import Memo


def test_a_memo_remembers_until_full_then_starts_over() -> None:
    memo: Memo[str, int] = Memo(limit=3)
    for n, key in enumerate("abc"):
        assert memo.remember(key, n) == n
    assert dict(memo) == {"a": 0, "b": 1, "c": 2}
    assert memo.remember("d", 3) == 3
    # Bounded: the fourth key clears the rest rather than growing past the limit.
    assert dict(memo) == {"d": 3}
