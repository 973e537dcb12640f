"""Read a prediction request: the image bytes and the heatmap options, from either body form.

    multipart/form-data   exactly one part, a file named `file`; options in the query string
    application/json      {"image_base64": ..., "heatmaps"?, "heatmap_style"?, "heatmap_size"?}

A malformed body is a 400, an unknown Content-Type a 415, a bad option a 422 (via HeatmapSpecError
or Problem); the image itself is only looked at later, by content.
"""

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from service.api.heatmaps import HeatmapSpec, HeatmapStyle, parse_heatmap_spec
from service.api.problems import Problem, describe_validation_errors
from service.api.schemas import PredictJSONRequest

FILE_FIELD = "file"
OPTION_FIELDS = ("heatmaps", "heatmap_style", "heatmap_size")
MAX_FORM_FIELD_BYTES = 64 * 1024
_DATA_URL = re.compile(r"^data:[\w.+/-]*(;[\w.+-]+=[\w.+-]+)*;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class QueryOptions:
    heatmaps: str | None
    heatmap_style: HeatmapStyle | None
    heatmap_size: int | None


@dataclass(frozen=True)
class PredictionRequest:
    image: bytes
    spec: HeatmapSpec
    style: HeatmapStyle
    size: int | None


async def read_prediction_request(request: Request, query: QueryOptions) -> PredictionRequest:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        image = await _read_multipart(request)
        options = query
    elif media_type == "application/json":
        image, options = await _read_json(request, query)
    else:
        raise Problem(
            415,
            f"Content-Type {media_type or '(none)'} is not accepted: send multipart/form-data with a "
            f"'{FILE_FIELD}' part, or application/json with image_base64",
            slug="unsupported-content-type",
            title="Unsupported request Content-Type",
        )
    return PredictionRequest(
        image=image,
        spec=parse_heatmap_spec(options.heatmaps),
        style=options.heatmap_style or HeatmapStyle.OVERLAY,
        size=options.heatmap_size,
    )


async def _read_multipart(request: Request) -> bytes:
    try:
        # max_files=2 so a second file gets the clear message below rather than the parser's.
        form = await request.form(max_files=2, max_fields=8, max_part_size=MAX_FORM_FIELD_BYTES)
    except (StarletteHTTPException, MultiPartException) as error:
        detail = getattr(error, "detail", None) or getattr(error, "message", "")
        raise Problem(400, f"the multipart body cannot be parsed: {detail}") from None
    try:
        unexpected = sorted({name for name in form if name != FILE_FIELD})
        if unexpected:
            hint = " (pass options as query parameters)" if set(unexpected) & set(OPTION_FIELDS) else ""
            raise Problem(
                400,
                f"unexpected form field(s) {', '.join(unexpected)}: send only the '{FILE_FIELD}' part{hint}",
            )
        parts = form.getlist(FILE_FIELD)
        if not parts:
            raise Problem(400, f"the multipart body has no '{FILE_FIELD}' part")
        if len(parts) > 1:
            raise Problem(400, f"{len(parts)} '{FILE_FIELD}' parts: send exactly one image per request")
        part = parts[0]
        if not isinstance(part, UploadFile):
            raise Problem(
                400,
                f"'{FILE_FIELD}' is a text field, not a file part: send it with a filename "
                f"(e.g. curl -F {FILE_FIELD}=@image.png)",
            )
        return await part.read()
    finally:
        await form.close()


async def _read_json(request: Request, query: QueryOptions) -> tuple[bytes, QueryOptions]:
    body = await request.body()
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        raise Problem(400, "the body is not valid JSON") from None
    try:
        parsed = PredictJSONRequest.model_validate(payload)
    except ValidationError as error:
        errors = error.errors(include_url=False, include_input=False)
        only_options = all(err["loc"] and err["loc"][0] in OPTION_FIELDS for err in errors)
        raise Problem(
            422 if only_options else 400, "JSON body: " + describe_validation_errors(errors)
        ) from None
    options = QueryOptions(
        heatmaps=_one_of("heatmaps", query.heatmaps, parsed.heatmaps),
        heatmap_style=_one_of(
            "heatmap_style",
            query.heatmap_style,
            HeatmapStyle(parsed.heatmap_style) if parsed.heatmap_style else None,
        ),
        heatmap_size=_one_of("heatmap_size", query.heatmap_size, parsed.heatmap_size),
    )
    return decode_base64_image(parsed.image_base64), options


def _one_of(name: str, from_query: Any, from_body: Any) -> Any:
    if from_query is not None and from_body is not None and from_query != from_body:
        raise Problem(
            422, f"{name} is given both in the query ({from_query}) and the JSON body ({from_body})"
        )
    return from_body if from_body is not None else from_query


def decode_base64_image(text: str) -> bytes:
    """Bytes of a base64 image: standard or URL-safe alphabet, padding optional, data: URL allowed."""
    compact = _WHITESPACE.sub("", _DATA_URL.sub("", text.strip(), count=1))
    if not compact:
        raise Problem(400, "image_base64 is empty")
    padded = compact + "=" * (-len(compact) % 4)
    try:
        if "-" in compact or "_" in compact:
            return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise Problem(400, "image_base64 is not valid base64") from None
