"""Making the result fit Lambda's response limit (6 MB by default, SANDBOX_MAX_RESULT_BYTES):
the block's state parts and files/images placed inline, by reference or in upload slots, and as a
last guard the largest items left out and the longest texts cut, always with a notice.

Sizes are bytes of the result serialized as compact JSON."""
from __future__ import annotations

import base64
import hashlib
import json
from typing import TYPE_CHECKING

from . import transfer
from .outputs import FileSource, Outputs

if TYPE_CHECKING:
    from .collect import Block

# A new state part smaller than this travels inline in the result; a larger one takes an upload slot.
INLINE_PART_MAX = 64 << 10
NOTICE_MARGIN = 4096  # for the notices that placing may still add


def _b64_len(n: int) -> int:
    return 4 * ((n + 2) // 3)


def _upper_size(result: dict) -> int:
    """An upper bound of the result's JSON size: JSON at most sextuples a character (a \\u escape),
    base64 is copied as is."""
    n = 1024
    for o in result["outputs"]:
        n += 200 + 6 * (len(o.get("text", "")) + len(o.get("traceback", "")) + len(o.get("message", ""))
                        + len(o.get("filename", ""))) + len(o.get("data", ""))
        if "mime_bundle" in o:
            n += _json_size(o["mime_bundle"])
    for p in (result.get("state") or {}).get("parts", ()):
        n += 160 + len(p.get("data", ""))
    return n


def _json_size(result: dict) -> int:
    return len(json.dumps(result, separators=(",", ":")))


def _room(result: dict, limit: int, wanted: int) -> int:
    """What is left under limit for `wanted` more inline bytes (serializing only when close)."""
    upper = _upper_size(result)
    if upper + wanted <= limit:
        return limit - upper
    return limit - _json_size(result)


def _notice(result: dict, text: str) -> None:
    result["outputs"].append({"type": "text", "source": "sandbox", "text": text})


def place_state(block: Block, limit: int, result: dict, slots: transfer.Slots, cache: transfer.PartCache) -> None:
    """Turn the child's state parts into result["state"]: an unchanged input part by reference,
    a new small one inline, a new large one in an upload slot (or inline while it fits). Either
    the whole state is saved or none of it, with a notice. New parts are kept in cache by their
    SHA-256, computed here."""
    new = []
    out = []
    it = iter(block.parts)
    for entry in block.manifest:
        part = {"sha256": entry["sha256"], "bytes": entry["bytes"]}
        if not entry["ref"]:
            data = next(it)
            # The child's digest is never trusted: this one becomes a cache key.
            part["sha256"] = hashlib.sha256(data).hexdigest()
            new.append((part, data))
        out.append(part)
    large = sorted((p for p in new if p[0]["bytes"] >= INLINE_PART_MAX), key=lambda p: -p[0]["bytes"])
    to_slots, inline = large[:slots.free()], large[slots.free():]
    wanted = sum(_b64_len(p["bytes"]) for p, _ in new if p["bytes"] < INLINE_PART_MAX)
    wanted += sum(_b64_len(p["bytes"]) for p, _ in inline)
    if wanted and wanted + NOTICE_MARGIN > _room(result, limit, wanted + NOTICE_MARGIN):
        _notice(result, f"[Python state was not saved: {sum(p['bytes'] for p, _ in new)} bytes of new parts do not "
                        f"fit in the result, and {len(slots.urls)} upload slots were given]")
        return
    for part, data in to_slots:
        try:
            part["slot"] = slots.upload(data, len(data), "application/octet-stream")
        except transfer.TransferError as exc:
            _notice(result, f"[Python state was not saved: a part could not be uploaded ({exc})]")
            return
    for part, data in new:
        if "slot" not in part:
            part["data"] = base64.b64encode(data).decode()
        cache.put(part["sha256"], data)
    result["state"] = {"parts": out}


def place_media(result: dict, outputs: Outputs, limit: int, slots: transfer.Slots) -> None:
    """Files and images inline while the result stays under limit; larger ones (largest first)
    go to the next unused upload slot; with no slot left they are left out with a notice."""
    media = sorted(outputs.media_items, key=lambda m: -m[2])
    wanted = sum(_b64_len(size) + 16 for _i, _s, size in media)
    room = _room(result, limit, wanted + NOTICE_MARGIN) - NOTICE_MARGIN
    notes = []
    dropped: set[int] = set()
    for item, source, size in media:
        if wanted <= room:
            break
        wanted -= _b64_len(size) + 16
        label = f"file {item['filename']}" if item["type"] == "file" else "an image"
        if slots.free():
            mime = item["mime_type"] or "application/octet-stream"
            body = source.chunks() if isinstance(source, FileSource) else source
            try:
                item["slot"] = slots.upload(body, size, mime)
                continue
            except (transfer.TransferError, OSError) as exc:
                notes.append(f"[{label} was left out: its upload failed ({exc})]")
        else:
            notes.append(f"[{label} was left out: the result would exceed {limit} bytes]")
        dropped.add(id(item))
    for item, source, size in media:
        if "slot" in item or id(item) in dropped:
            continue
        try:
            data = source.read() if isinstance(source, FileSource) else source
        except OSError as exc:
            dropped.add(id(item))
            notes.append(f"[file {item['filename']} was left out: {exc}]")
            continue
        item["bytes"] = len(data)
        item["data"] = base64.b64encode(data).decode()
    # By identity: two images without data yet are equal dicts.
    result["outputs"][:] = [o for o in result["outputs"] if id(o) not in dropped]
    result["outputs"].extend({"type": "text", "source": "sandbox", "text": n} for n in notes)


def fit_result(result: dict, limit: int) -> None:
    """Keep the result under Lambda's response limit (6 MB), saying what was left out: first
    the largest inline files and images, then the Python state, then the longest texts.
    place_media has already moved what it could to upload slots; this is the last guard."""
    def size() -> int:
        return _json_size(result)

    if _upper_size(result) <= limit or size() <= limit:
        return
    outputs = result["outputs"]
    notes = []
    for item in sorted((o for o in outputs if o["type"] in ("file", "image") and "data" in o),
                       key=lambda o: -len(o["data"])):
        outputs.remove(item)
        label = f"file {item['filename']}" if item["type"] == "file" else "an image"
        notes.append(f"[{label} was left out: the result would exceed {limit} bytes]")
        if size() + sum(len(n) + 64 for n in notes) <= limit:
            break
    bundles = sorted((o for o in outputs if "mime_bundle" in o), key=lambda o: -_json_size(o["mime_bundle"]))
    for item in bundles:
        if size() + sum(len(n) + 64 for n in notes) <= limit:
            break
        result["output_dropped_bytes"] = result.get("output_dropped_bytes", 0) + _json_size(item.pop("mime_bundle"))
        notes.append("[the rich forms (HTML, ...) of a result were left out: the result would exceed the size limit]")
    state = result.get("state")
    if state and any("data" in p for p in state["parts"]) and size() > limit:
        del result["state"]
        notes.append("[the Python state was not kept: the result would exceed the size limit]")
    outputs.extend({"type": "text", "source": "sandbox", "text": n} for n in notes)
    while size() > limit:
        texts = [o for o in outputs if o["type"] in ("text", "error") and len(o.get("text") or o.get("traceback") or "") > 64]
        if not texts:
            break
        longest = max(texts, key=lambda o: len(o.get("text") or o.get("traceback") or ""))
        field = "text" if longest["type"] == "text" else "traceback"
        cut = len(longest[field]) // 2
        result["output_dropped_bytes"] = result.get("output_dropped_bytes", 0) + len(longest[field][cut:].encode())
        longest[field] = longest[field][:cut] + "\n[cut: the result would exceed the size limit]"
