"""The canonical label order and the course order."""

import pytest

from cxr.labels import (
    COURSE_LABELS,
    LABELS,
    NO_FINDING,
    UnknownLabelError,
    label_index,
    reorder_indices,
    validate_labels,
)


def test_there_are_14_distinct_labels_in_alphabetical_order() -> None:
    assert len(LABELS) == len(set(LABELS)) == 14
    assert list(LABELS) == sorted(LABELS)
    assert NO_FINDING not in LABELS


def test_the_course_order_is_a_permutation_of_the_canonical_order() -> None:
    assert sorted(COURSE_LABELS) == sorted(LABELS)
    assert COURSE_LABELS != LABELS


@pytest.mark.parametrize(("name", "index"), [("Atelectasis", 0), ("Hernia", 7), ("Pneumothorax", 13)])
def test_label_index(name: str, index: int) -> None:
    assert label_index(name) == index


@pytest.mark.parametrize("name", ["hernia", "No Finding", "Pleural Thickening", ""])
def test_unknown_labels_are_refused_by_name(name: str) -> None:
    with pytest.raises(UnknownLabelError, match=f"unknown label {name!r}") as caught:
        label_index(name)
    assert caught.value.name == name


def test_reorder_indices_put_course_columns_in_canonical_order() -> None:
    order = reorder_indices(COURSE_LABELS, LABELS)
    assert [COURSE_LABELS[i] for i in order] == list(LABELS)
    back = reorder_indices(LABELS, COURSE_LABELS)
    assert [order[i] for i in back] == list(range(14))


def test_reorder_indices_refuse_different_label_sets() -> None:
    with pytest.raises(UnknownLabelError):
        reorder_indices([*LABELS[:13], "Flying_Saucer"])
    with pytest.raises(ValueError, match="missing from source order: Pneumothorax"):
        reorder_indices(LABELS[:13])


def test_validate_labels_returns_canonical_order_without_duplicates() -> None:
    assert validate_labels(["Mass", "Edema", "Mass"]) == ["Edema", "Mass"]
    with pytest.raises(UnknownLabelError):
        validate_labels(["Mass", "mass"])
