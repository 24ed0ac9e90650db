"""The one error a missing or malformed dataset raises."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset that cannot be read: missing files, a wrong layout, a truncated or corrupt file,
    or a config that does not match the data (class or channel count).

    The message names the path, the expected layout and how to get the data, so a run fails
    once, up front, with everything needed to fix it.
    """


def layout_error(dataset: str, problem: str, layout: list[str], how_to_get: str) -> DatasetError:
    """A DatasetError for data that is missing or laid out wrongly.

    ``problem`` says what is wrong and where (it should name the path), ``layout`` lists the
    expected files and folders one per line, ``how_to_get`` says where the data comes from.
    """
    lines = "\n".join(f"  {entry}" for entry in layout)
    return DatasetError(
        f"{dataset}: {problem}\nexpected layout:\n{lines}\nhow to get it: {how_to_get}"
    )
