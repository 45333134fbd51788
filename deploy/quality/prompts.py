"""The prompt set for ``quality kl``: JSON Lines, one ``{"id", "text"[, "image"]}`` object per line.

``image`` is a path relative to the file (PNG or JPEG); it is sent as a data URL before the text, the same
way a user's image reaches the server. The set that ships with the bundle is ``deploy/data/kl-prompts.jsonl``
(40 text prompts of different kinds, 8 image+text prompts).
"""

from __future__ import annotations

import base64
import json
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.errors import UsageError

DEFAULT_PROMPTS = Path(__file__).resolve().parents[1] / "data" / "kl-prompts.jsonl"


class PromptFileError(UsageError):
    """The prompt file is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class KLPrompt:
    """One prompt: its id, text and, for image prompts, the image's path."""

    id: str
    text: str
    image: Path | None = None

    def messages(self) -> list[dict[str, Any]]:
        """OpenAI chat messages: one user turn, the image (as a data URL) first."""
        if self.image is None:
            return [{"role": "user", "content": self.text}]
        mime = mimetypes.guess_type(self.image.name)[0] or "image/png"
        url = f"data:{mime};base64," + base64.b64encode(self.image.read_bytes()).decode("ascii")
        return [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": self.text}],
            }
        ]


def load_prompts(path: Path = DEFAULT_PROMPTS) -> list[KLPrompt]:
    """Read and check a prompt file; :class:`PromptFileError` names the first problem."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise PromptFileError(f"cannot read the prompt file {path}: {exc}") from exc
    prompts: list[KLPrompt] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise PromptFileError(f"{path}:{number}: not JSON ({exc})") from exc
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"]:
            raise PromptFileError(f'{path}:{number}: expected {{"id": ..., "text": ...[, "image": ...]}}')
        pid = str(item.get("id") or f"line-{number}")
        if pid in seen:
            raise PromptFileError(f"{path}:{number}: duplicate id {pid!r}")
        seen.add(pid)
        image = None
        if item.get("image"):
            image = (Path(path).parent / item["image"]).resolve()
            if not image.is_file():
                raise PromptFileError(f"{path}:{number}: image {item['image']!r} not found at {image}")
        prompts.append(KLPrompt(pid, item["text"], image))
    if not prompts:
        raise PromptFileError(f"{path} holds no prompts")
    return prompts
