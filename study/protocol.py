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
from study.prompts.spec import (
    EXEMPLAR_RULES,
    STRATEGY_NAME_PATTERN,
    PromptsSpec,
    known_strategy_names,
    shipped_strategies,
)

STRATEGIES: tuple[str, ...] = tuple(shipped_strategies())
"""Prompt strategies shipped with the package; a protocol may define more under ``prompts``."""


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
    # Per feature (or "default"): one rate, or rates by strategy (or "default").
    error_rates: dict[str, float | dict[str, float]] = Field(
        default_factory=lambda: {"default": 0.15}
    )

    @field_validator("error_rates")
    @classmethod
    def _rates_are_probabilities(
        cls, rates: dict[str, float | dict[str, float]]
    ) -> dict[str, float | dict[str, float]]:
        for key, entry in rates.items():
            if key != "default" and key not in FEATURES:
                raise ValueError(f"unknown feature {key!r}; use 'default' or a feature name")
            by_strategy = entry if isinstance(entry, dict) else {"default": entry}
            # Strategy names are not checked here, because a protocol may define its own.
            for strategy, rate in by_strategy.items():
                if not 0.0 <= rate <= 1.0:
                    raise ValueError(
                        f"error rate for {key!r} ({strategy}) is {rate}; "
                        "give a probability in [0, 1]"
                    )
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

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if urlparse(url).scheme not in ("http", "https") or not urlparse(url).hostname:
            raise ValueError(
                f"base_url {url!r} is not an http(s) URL; write it in full, "
                "e.g. http://127.0.0.1:8000/v1"
            )
        return url

    # Provider limits per request, checked at registration (study.prompts.check_request_limits).
    max_images_per_request: int | None = Field(None, ge=1)
    max_request_bytes: int | None = Field(None, ge=1)
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)
    structured_output: Literal["auto", "json_schema", "prompt"] = "auto"


ReaderSpec = Annotated[
    QuantitativeReaderSpec | SimulatedReaderSpec | OpenAIReaderSpec, Field(discriminator="kind")
]


class GridSpec(_Strict):
    """The grid of cells: every reader × strategy × sequence combination × replicate."""

    readers: list[ReaderSpec] = Field(min_length=1)
    strategies: list[Annotated[str, Field(pattern=STRATEGY_NAME_PATTERN)]] = Field(min_length=1)
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
    rule: Literal[EXEMPLAR_RULES] = "random"


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
    mark: Literal["none", "box", "arrow"] = "none"

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
    seed: int = Field(20261204, ge=0)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    indeterminate_as: Literal["absent", "missing"] = "absent"
    failures_as: Literal["wrong", "missing"] = "wrong"
    noninferiority_margin: float = Field(0.1, gt=0.0, lt=1.0)
    multiplicity: Literal[
        "bonferroni", "holm", "hochberg", "sidak", "sidak_stepdown", "bh", "by", "none"
    ] = "holm"


class PriceSpec(_Strict):
    """List price of one model, in US dollars per million tokens."""

    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)


class BudgetSpec(_Strict):
    """The most one ``vlmstudy run`` may spend on new model calls, in US dollars."""

    max_cost_usd: float | None = Field(None, gt=0)


class PrivacySpec(_Strict):
    """Consent to send rendered images to hosts outside this machine."""

    external_endpoints_allowed: bool = False


class TuneRange(_Strict):
    """One tunable setting: a range from ``low`` to ``high``, or a list of ``choices``."""

    low: float | None = None
    high: float | None = None
    choices: list[float | int | str] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> TuneRange:
        has_range = self.low is not None and self.high is not None
        if has_range == (self.choices is not None):
            raise ValueError("give either 'low' and 'high', or 'choices'")
        if has_range and self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        return self


TUNABLES = ("few_shot.k", "rendering.size", "rendering.window_low", "rendering.window_high")
"""Settings ``vlmstudy tune`` may vary."""


class TuneSpec(_Strict):
    """The exploratory tuning of ``vlmstudy tune``, run on the development split only."""

    split: str = "development"
    reader: str
    strategy: str = "few_shot"
    sequences: list[str]
    n_trials: int = Field(20, ge=1, le=10000)
    seed: int = 0
    metric: Literal["accuracy", "kappa"] = "accuracy"
    space: dict[str, TuneRange] = Field(min_length=1)

    @field_validator("split")
    @classmethod
    def _development_only(cls, split: str) -> str:
        if split != "development":
            raise ValueError(
                f"tune.split is {split!r}; tuning runs on the development split only, so that "
                "the evaluation split stays untouched for the confirmatory analysis"
            )
        return split

    @field_validator("space")
    @classmethod
    def _known_tunables(cls, space: dict[str, TuneRange]) -> dict[str, TuneRange]:
        unknown = [name for name in space if name not in TUNABLES]
        if unknown:
            raise ValueError(f"unknown tunable(s) {unknown}; tunable: {', '.join(TUNABLES)}")
        return space


def _checked_features(names: list[str]) -> list[str]:
    """Return feature names unchanged, or raise for an unknown or repeated one."""
    unknown = [name for name in names if name not in FEATURES]
    if unknown:
        raise ValueError(f"unknown feature(s) {unknown}; known features: {', '.join(FEATURES)}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"feature(s) {repeated} are listed twice; list each feature once")
    return names


CELL_KEYS = ("reader", "strategy", "sequences", "replicate")
"""Keys that select grid cells in a hypothesis's ``contrast`` and ``versus``."""


class HypothesisSpec(_Strict):
    """One preregistered hypothesis, answered in the report's hypotheses section."""

    id: str
    statement: str
    confirmatory: bool = True
    endpoint: Literal["kappa", "ac1", "accuracy", "noninferiority"]
    features: list[str] = Field(min_length=1)
    contrast: dict[str, str | int | list[str]] = Field(default_factory=dict)
    # Compare the contrast's cells with these (the other cell keys kept): a difference.
    versus: dict[str, str | int | list[str]] | None = None
    test: str | None = None
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    direction: Literal["greater", "less", "two-sided"] = "greater"
    null_value: float = 0.0
    margin: float | None = Field(None, gt=0.0, lt=1.0)

    @field_validator("features")
    @classmethod
    def _known_hypothesis_features(cls, names: list[str]) -> list[str]:
        return _checked_features(names)

    @model_validator(mode="after")
    def _comparable(self) -> HypothesisSpec:
        for key, selection in (("contrast", self.contrast), ("versus", self.versus or {})):
            unknown = [name for name in selection if name not in CELL_KEYS]
            if unknown:
                raise ValueError(
                    f"hypothesis {self.id}: {key} key(s) {unknown} are not cell keys; use "
                    f"{', '.join(CELL_KEYS)}"
                )
        if self.endpoint == "noninferiority" and self.direction != "greater":
            raise ValueError(
                f"hypothesis {self.id}: a non-inferiority test is one-sided by definition; "
                "remove 'direction' or set it to greater"
            )
        if self.versus is not None:
            if self.endpoint not in ("kappa", "accuracy"):
                raise ValueError(
                    f"hypothesis {self.id}: 'versus' compares cells on kappa or accuracy, "
                    f"not {self.endpoint!r}"
                )
            if not self.versus:
                raise ValueError(f"hypothesis {self.id}: 'versus' names no cell key")
        return self


MAX_POWER_LESIONS = 20_000
"""Largest simulated cohort; every study keeps all its lesions' answers in memory."""

MAX_POWER_STUDIES = 100_000
"""Most simulated studies per cohort size and scenario; the seeds of all are listed up front."""


class PowerSpec(_Strict):
    """Assumptions of ``vlmstudy power``: cohort sizes, radiologists and each reader's accuracy.

    The effect sizes are stated as error rates of the readers the hypotheses
    test, in the shape of :class:`SimulatedReaderSpec` ``error_rates``, or as
    expected endpoint values in ``effects``. The power output shows the
    endpoint value each scenario implies.
    """

    lesions: list[Annotated[int, Field(ge=10, le=MAX_POWER_LESIONS)]] = Field(
        [50, 100, 200, 400], min_length=1
    )
    n_sim: int = Field(500, ge=10, le=MAX_POWER_STUDIES)
    seed: int = Field(1, ge=0)
    lesions_per_patient: float = Field(2.0, ge=1.0, le=20.0)
    radiologists: int = Field(3, ge=2, le=10)
    radiologist_kappa: dict[str, Annotated[float, Field(gt=0.0, le=1.0)]] = Field(
        default_factory=dict
    )
    prevalence: dict[str, dict[str, Annotated[float, Field(ge=0.0, le=1.0)]]] = Field(
        default_factory=dict
    )
    error_rates: dict[str, dict[str, float | dict[str, float]]] = Field(default_factory=dict)
    # Expected endpoint value per hypothesis id; it overrides the error rates of its cells.
    effects: dict[str, float] = Field(default_factory=dict)
    bootstrap_resamples: int | None = Field(None, ge=100)

    @field_validator("lesions")
    @classmethod
    def _distinct_sizes(cls, sizes: list[int]) -> list[int]:
        return sorted(set(sizes))

    @field_validator("radiologist_kappa")
    @classmethod
    def _kappa_features(cls, kappas: dict[str, float]) -> dict[str, float]:
        unknown = [name for name in kappas if name not in FEATURES]
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown}; known features: {', '.join(FEATURES)}")
        return kappas

    @field_validator("prevalence")
    @classmethod
    def _prevalence_sums_to_one(
        cls, prevalence: dict[str, dict[str, float]]
    ) -> dict[str, dict[str, float]]:
        for name, shares in prevalence.items():
            if name not in FEATURES:
                raise ValueError(f"unknown feature {name!r}; known features: {', '.join(FEATURES)}")
            categories = FEATURES[name].categories
            unknown = [category for category in shares if category not in categories]
            if unknown:
                raise ValueError(
                    f"prevalence of {name!r}: unknown categories {unknown}; use {list(categories)}"
                )
            if abs(sum(shares.values()) - 1.0) > 1e-6:
                raise ValueError(
                    f"prevalence of {name!r} sums to {sum(shares.values()):g}; "
                    "the shares of its categories must sum to 1"
                )
        return prevalence

    @field_validator("error_rates")
    @classmethod
    def _rates_per_reader(
        cls, rates: dict[str, dict[str, float | dict[str, float]]]
    ) -> dict[str, dict[str, float | dict[str, float]]]:
        for reader, reader_rates in rates.items():
            if not reader_rates:
                raise ValueError(
                    f"error rates of reader {reader!r} are empty; give at least a default, "
                    "e.g. {default: 0.2}"
                )
            SimulatedReaderSpec._rates_are_probabilities(reader_rates)
        return rates


class DataStatusSpec(_Strict):
    """Whether the data existed, and had been looked at, when the protocol was registered."""

    data_existed: bool
    data_examined: bool
    notes: str = ""


class Protocol(_Strict):
    """A preregistered study protocol."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    title: str
    question: str | None = None
    version: str = "1"
    authors: list[str] = Field(default_factory=list)
    data_status: DataStatusSpec | None = None
    hypotheses: list[HypothesisSpec] = Field(default_factory=list)
    cohort: CohortSpec
    features: list[str] = Field(min_length=1)
    grid: GridSpec
    few_shot: FewShotSpec = FewShotSpec()
    decoding: DecodingSpec = DecodingSpec()
    rendering: RenderingSpec = RenderingSpec()
    analysis: AnalysisSpec = AnalysisSpec()
    privacy: PrivacySpec = PrivacySpec()
    prompts: PromptsSpec = PromptsSpec()
    pricing: dict[str, PriceSpec] = Field(default_factory=dict)
    budget: BudgetSpec = BudgetSpec()
    tune: TuneSpec | None = None
    power: PowerSpec | None = None

    @field_validator("features")
    @classmethod
    def _known_features(cls, names: list[str]) -> list[str]:
        return _checked_features(names)

    @model_validator(mode="after")
    def _known_strategies(self) -> Protocol:
        known = known_strategy_names(self.prompts)
        unknown = [name for name in self.grid.strategies if name not in known]
        if unknown:
            raise ValueError(
                f"grid.strategies: unknown strategy(ies) {unknown}; use one of {', '.join(known)} "
                "or define it under prompts.strategies"
            )
        if len(set(self.grid.strategies)) != len(self.grid.strategies):
            raise ValueError(f"grid.strategies {self.grid.strategies} repeats a strategy")
        return self

    @model_validator(mode="after")
    def _hypotheses_on_studied_features(self) -> Protocol:
        ids = [hypothesis.id for hypothesis in self.hypotheses]
        repeated = sorted({name for name in ids if ids.count(name) > 1})
        if repeated:
            raise ValueError(f"hypothesis id(s) {repeated} are used twice; give each its own id")
        for hypothesis in self.hypotheses:
            outside = [name for name in hypothesis.features if name not in self.features]
            if outside:
                raise ValueError(
                    f"hypothesis {hypothesis.id}: feature(s) {outside} are not among the "
                    f"protocol's features ({', '.join(self.features)}); add them to 'features' "
                    "so the readers judge them"
                )
        return self

    @model_validator(mode="after")
    def _power_readers_known(self) -> Protocol:
        if self.power is None:
            return self
        names = [reader.name for reader in self.grid.readers]
        unknown = [name for name in self.power.error_rates if name not in names]
        if unknown:
            raise ValueError(
                f"power.error_rates: unknown reader(s) {unknown}; grid readers: {', '.join(names)}"
            )
        strategies = set(known_strategy_names(self.prompts)) | {"default"}
        for reader, rates in self.power.error_rates.items():
            for feature, entry in rates.items():
                misspelled = sorted(set(entry) - strategies) if isinstance(entry, dict) else []
                if misspelled:
                    named = ", ".join(sorted(strategies - {"default"}))
                    raise ValueError(
                        f"power.error_rates.{reader}.{feature}: unknown strategy(ies) "
                        f"{misspelled}; use default or one of {named}"
                    )
        ids = [hypothesis.id for hypothesis in self.hypotheses]
        unknown = [name for name in self.power.effects if name not in ids]
        if unknown:
            raise ValueError(
                f"power.effects: unknown hypothesis id(s) {unknown}; hypotheses: {', '.join(ids)}"
            )
        return self


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
    except UnicodeDecodeError:
        raise UserInputError(
            f"{path}: not a UTF-8 text file; save the protocol as UTF-8 YAML."
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise UserInputError(
            f"{path}: not valid YAML{where} ({problem}); fix the syntax."
        ) from None
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


def cohort_path(protocol: Protocol, protocol_file: Path, *, must_exist: bool = True) -> Path:
    """Return the cohort folder, resolved relative to the protocol file.

    Raises
    ------
    UserInputError
        When ``must_exist`` and the folder has no ``manifest.csv``.
    """
    folder = (Path(protocol_file).resolve().parent / protocol.cohort.path).resolve()
    if must_exist and not (folder / "manifest.csv").is_file():
        raise UserInputError(
            f"{protocol_file}: cohort.path {protocol.cohort.path!r} resolves to {folder}, which "
            "has no manifest.csv; point cohort.path (relative to the protocol file) at a cohort "
            "folder, or build one with 'vlmstudy data phantom'."
        )
    return folder
