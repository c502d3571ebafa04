"""The study protocol: its schema, loading with every violation reported, and its hash.

A protocol is a YAML file under ``protocols/``. Loading validates it with
pydantic and reports every violation at once, naming the file and the field.
The canonical form is the parsed YAML mapping serialised as JSON with sorted
keys, so comments, whitespace and key order do not change the SHA-256.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from study.errors import UserInputError
from study.lirads import FEATURES, SEQUENCES

STRATEGIES: tuple[str, ...] = ("zero_shot", "few_shot", "chain_of_thought")
"""Prompt strategies the sweep can run."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PhantomSpec(_Strict):
    """The phantom cohort ``vlmstudy demo`` builds when the cohort folder does not exist yet."""

    patients: int = Field(16, ge=4)
    seed: int = 0


class CohortSpec(_Strict):
    """The cohort folder, relative to the protocol file."""

    path: str
    phantom: PhantomSpec | None = None


class QuantitativeReaderSpec(_Strict):
    """The local baseline that measures lesion against liver signal on the rendered images."""

    kind: Literal["quantitative"]
    name: str


class SimulatedReaderSpec(_Strict):
    """A reader that draws answers from the ground truth with stated error rates."""

    kind: Literal["simulated"]
    name: str
    seed: int = 0
    error_rates: dict[str, float] = Field(default_factory=lambda: {"default": 0.15})

    @field_validator("error_rates")
    @classmethod
    def _rates_are_probabilities(cls, rates: dict[str, float]) -> dict[str, float]:
        for key, rate in rates.items():
            if key != "default" and key not in FEATURES:
                raise ValueError(f"unknown feature {key!r}; use 'default' or a feature name")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"error rate for {key!r} is {rate}; give a probability in [0, 1]")
        return rates


class OpenAIReaderSpec(_Strict):
    """Any OpenAI-compatible chat-completions endpoint."""

    kind: Literal["openai"]
    name: str
    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = Field(4, ge=1, le=256)
    max_retries: int = Field(4, ge=0, le=20)
    timeout_s: float = Field(120.0, gt=0)
    image_detail: Literal["low", "high", "auto"] = "auto"


ReaderSpec = Annotated[
    QuantitativeReaderSpec | SimulatedReaderSpec | OpenAIReaderSpec, Field(discriminator="kind")
]


class GridSpec(_Strict):
    """The grid of cells: every reader × strategy × sequence combination × replicate."""

    readers: list[ReaderSpec] = Field(min_length=1)
    strategies: list[Literal["zero_shot", "few_shot", "chain_of_thought"]] = Field(min_length=1)
    sequences: list[list[str]] = Field(min_length=1)
    replicates: int = Field(1, ge=1)

    @field_validator("sequences")
    @classmethod
    def _known_sequences(cls, combinations: list[list[str]]) -> list[list[str]]:
        for combination in combinations:
            if not combination:
                raise ValueError("a sequence combination is empty; list at least one sequence")
            unknown = [name for name in combination if name not in SEQUENCES]
            if unknown:
                raise ValueError(
                    f"unknown sequence(s) {unknown}; known sequences: {', '.join(SEQUENCES)}"
                )
            if len(set(combination)) != len(combination):
                raise ValueError(f"sequence combination {combination} repeats a sequence")
        return combinations

    @model_validator(mode="after")
    def _unique_reader_names(self) -> GridSpec:
        names = [reader.name for reader in self.readers]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(
                f"reader names {repeated} are used twice; give each reader its own name"
            )
        return self


class FewShotSpec(_Strict):
    """The size and seed of the few-shot exemplar draw from the ``exemplar`` split."""

    k: int = Field(2, ge=1, le=8)
    seed: int = 0


class DecodingSpec(_Strict):
    """Decoding settings sent to model endpoints."""

    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(800, ge=16)
    seed: int | None = 0


class RenderingSpec(_Strict):
    """Rendering settings of the lesion images shown to readers."""

    size: int = Field(256, ge=32, le=2048)
    margin: float = Field(1.0, ge=0.0)
    window: tuple[float, float] = (1.0, 99.0)
    mark: Literal["none", "box"] = "none"

    @field_validator("window")
    @classmethod
    def _ordered_window(cls, window: tuple[float, float]) -> tuple[float, float]:
        low, high = window
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(
                f"window {list(window)} must be two percentiles with 0 <= low < high <= 100"
            )
        return window


class AnalysisSpec(_Strict):
    """The preregistered analysis settings."""

    bootstrap_resamples: int = Field(1000, ge=100)
    seed: int = 20261204
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    indeterminate_as: Literal["absent", "missing"] = "absent"
    failures_as: Literal["wrong", "missing"] = "wrong"


class PrivacySpec(_Strict):
    """Consent to send rendered images to hosts outside this machine."""

    external_endpoints_allowed: bool = False


class Protocol(_Strict):
    """A preregistered study protocol."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    title: str
    version: str = "1"
    cohort: CohortSpec
    features: list[str] = Field(min_length=1)
    grid: GridSpec
    few_shot: FewShotSpec = FewShotSpec()
    decoding: DecodingSpec = DecodingSpec()
    rendering: RenderingSpec = RenderingSpec()
    analysis: AnalysisSpec = AnalysisSpec()
    privacy: PrivacySpec = PrivacySpec()

    @field_validator("features")
    @classmethod
    def _known_features(cls, names: list[str]) -> list[str]:
        unknown = [name for name in names if name not in FEATURES]
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown}; known features: {', '.join(FEATURES)}")
        return names


def is_loopback_url(url: str) -> bool:
    """Return whether ``url`` points at this machine (127.0.0.0/8, ::1 or localhost).

    Examples
    --------
    >>> is_loopback_url("http://127.0.0.1:8000/v1")
    True
    >>> is_loopback_url("https://api.example.com/v1")
    False
    """
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _format_errors(path: Path, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  - {location}: {item['msg']}")
    return (
        f"{path}: the protocol is invalid ({len(lines)} problem(s)); "
        "fix these fields (protocols/template.yaml documents every key):\n" + "\n".join(lines)
    )


def read_protocol_mapping(path: Path) -> dict[str, Any]:
    """Read the YAML mapping of a protocol file, raising UserInputError on bad YAML."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: protocol file not found; give the path to a YAML protocol.")
    try:
        mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise UserInputError(f"{path}: not valid YAML ({error}); fix the syntax.") from None
    if not isinstance(mapping, dict):
        raise UserInputError(f"{path}: a protocol must be a YAML mapping of keys to values.")
    return mapping


def load_protocol(path: Path) -> Protocol:
    """Load and validate a protocol, reporting every violation at once.

    Raises
    ------
    UserInputError
        When the file is missing, is not YAML, breaks the schema, or sends
        images to a non-loopback endpoint without consent.
    """
    path = Path(path)
    mapping = read_protocol_mapping(path)
    try:
        protocol = Protocol.model_validate(mapping)
    except ValidationError as error:
        raise UserInputError(_format_errors(path, error)) from None

    if not protocol.privacy.external_endpoints_allowed:
        for reader in protocol.grid.readers:
            if isinstance(reader, OpenAIReaderSpec) and not is_loopback_url(reader.base_url):
                raise UserInputError(
                    f"{path}: reader {reader.name!r} sends images to {reader.base_url}, which is "
                    "not on this machine; set 'privacy: {external_endpoints_allowed: true}' in the "
                    "protocol to consent to sending rendered images to that host."
                )
    return protocol


def canonical_json(mapping: dict[str, Any]) -> str:
    """Serialise a mapping canonically: sorted keys, no whitespace, UTF-8 kept.

    Examples
    --------
    >>> canonical_json({"b": 1, "a": [1, 2]})
    '{"a":[1,2],"b":1}'
    """
    return json.dumps(mapping, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def protocol_sha256(path: Path) -> str:
    """Return the SHA-256 of a protocol's canonical form."""
    mapping = read_protocol_mapping(Path(path))
    return hashlib.sha256(canonical_json(mapping).encode("utf-8")).hexdigest()


def cohort_path(protocol: Protocol, protocol_file: Path) -> Path:
    """Return the cohort folder, resolved relative to the protocol file."""
    return (Path(protocol_file).resolve().parent / protocol.cohort.path).resolve()
