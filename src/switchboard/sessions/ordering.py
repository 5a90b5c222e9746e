"""Answers in the order utterances were received (contract §2 "Exactly one answer, in order").

Pure: each accepted utterance takes a place in line; an answer fills its place; ``ready``
yields the frames that can go out now, from the head of the line.
"""

from __future__ import annotations

from collections.abc import Iterator


class AnswerLine:
    __slots__ = ("_line",)

    def __init__(self) -> None:
        # Job id → its answer (None until it has one), in arrival order: one dict keeps both
        # the order and the answers (a dict keeps insertion order at a third of an
        # OrderedDict's size; the line is short, at most --max-pending-per-session).
        self._line: dict[str, bytes | None] = {}

    def __len__(self) -> int:
        return len(self._line)

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._line

    def enqueue(self, job_id: str) -> None:
        self._line[job_id] = None

    def answer(self, job_id: str, frame: bytes) -> bool:
        """Fill ``job_id``'s place; ``False`` if it has none or was answered already."""
        line = self._line
        if line.get(job_id, frame) is not None:  # no place (the default) or answered
            return False
        line[job_id] = frame
        return True

    def drop(self, job_id: str) -> None:
        """Forget a place (the session is ending; the utterance goes unanswered)."""
        self._line.pop(job_id, None)

    def ready(self) -> Iterator[bytes]:
        """Pop and yield the answered frames at the head of the line, in order."""
        line = self._line
        while line:
            head = next(iter(line))
            frame = line[head]
            if frame is None:
                return
            del line[head]
            yield frame
