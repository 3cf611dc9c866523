"""keep_ends: the partial rule for letters and digits, on its fast path (values of letters and
digits only) and its general path (separators kept), checked against the rule as stated."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.masking.partial import MASK_CHAR, keep_ends


def _by_the_rule(text: str, keep_first: int, keep_last: int) -> str:
    positions = [index for index, char in enumerate(text) if char.isalnum()]
    while keep_first + keep_last > len(positions) // 2 and (keep_first or keep_last):
        if keep_last >= keep_first:
            keep_last -= 1
        else:
            keep_first -= 1
    hidden = set(positions[keep_first : len(positions) - keep_last])
    return "".join(MASK_CHAR if index in hidden else char for index, char in enumerate(text))


@settings(max_examples=500, deadline=None)
@given(
    text=st.text() | st.text(alphabet="0123456789", min_size=1) | st.text(alphabet="ab12-/ "),
    keep_first=st.integers(0, 6),
    keep_last=st.integers(0, 6),
)
def test_keep_ends_follows_the_rule(text: str, keep_first: int, keep_last: int) -> None:
    assert keep_ends(text, keep_first, keep_last) == _by_the_rule(text, keep_first, keep_last)


def test_a_card_number_keeps_its_last_four() -> None:
    assert keep_ends("4539578763621486", 0, 4) == "************1486"
    assert keep_ends("4539-5787-6362-1486", 0, 4) == "****-****-****-1486"
    assert keep_ends("12", 0, 4) == "*2"  # never more than half visible
