"""Prices, token estimates and the cost of model calls.

:data:`DEFAULT_PRICES` lists prices in US dollars per million tokens by model
name. A protocol's ``pricing`` mapping overrides or extends it, and it should,
because list prices change. A model without a price gets a missing cost
(NaN), and a run with a budget cap refuses to start until every model reader
has a price.

Token estimates follow the rules OpenAI documents for GPT-4o-class models: a
text token is about 4 characters, and an image costs 85 tokens at ``detail``
``low``, else 85 plus 170 per 512-pixel tile after the image is scaled to fit
2048 × 2048 and then to 768 pixels on its short side. Other providers count
differently, so an estimate is an estimate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from study.errors import UserInputError
from study.protocol import OpenAIReaderSpec, PriceSpec, Protocol

# NOTE: these are list prices as recalled for late 2024 to 2025 and were not checked against the
# providers' pages here; set `pricing` in the protocol to the prices of your contract.
DEFAULT_PRICES: dict[str, PriceSpec] = {
    "gpt-4o": PriceSpec(input_per_million=2.50, output_per_million=10.00),
    "gpt-4o-2024-08-06": PriceSpec(input_per_million=2.50, output_per_million=10.00),
    "gpt-4o-2024-11-20": PriceSpec(input_per_million=2.50, output_per_million=10.00),
    "gpt-4o-mini": PriceSpec(input_per_million=0.15, output_per_million=0.60),
    "gpt-4o-mini-2024-07-18": PriceSpec(input_per_million=0.15, output_per_million=0.60),
    "gpt-4.1": PriceSpec(input_per_million=2.00, output_per_million=8.00),
    "gpt-4.1-mini": PriceSpec(input_per_million=0.40, output_per_million=1.60),
    "deepseek-chat": PriceSpec(input_per_million=0.27, output_per_million=1.10),
}
"""Prices in US dollars per million tokens, by model name; see the NOTE beside it."""

CHARS_PER_TOKEN = 4
EXPECTED_OUTPUT_TOKENS_PER_FEATURE = 25
EXPECTED_REASONING_TOKENS = 200


def price_table(protocol: Protocol) -> dict[str, PriceSpec]:
    """Return the default prices updated with the protocol's ``pricing``."""
    return {**DEFAULT_PRICES, **protocol.pricing}


def call_cost_usd(price: PriceSpec | None, input_tokens: int, output_tokens: int) -> float:
    """Return the cost of one call in US dollars, NaN without a price.

    Examples
    --------
    >>> call_cost_usd(PriceSpec(input_per_million=2.5, output_per_million=10.0), 1000, 100)
    0.0035
    """
    if price is None:
        return float("nan")
    return (
        input_tokens * price.input_per_million + output_tokens * price.output_per_million
    ) / 1_000_000


def image_tokens(width: int, height: int, detail: str) -> int:
    """Estimate the input tokens of one image by OpenAI's tile rule for GPT-4o.

    Examples
    --------
    >>> image_tokens(256, 256, "low"), image_tokens(256, 256, "high")
    (85, 255)
    >>> image_tokens(1024, 1024, "high")
    765
    """
    if detail == "low":
        return 85
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    tiles = math.ceil(width / 512) * math.ceil(height / 512)
    return 85 + 170 * tiles


def text_tokens(text: str) -> int:
    """Estimate the tokens of a text at 4 characters per token.

    Examples
    --------
    >>> text_tokens("abcdefghi")
    3
    """
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def expected_output_tokens(n_features: int, strategy: str, max_tokens: int) -> int:
    """Estimate the output tokens of one answer, capped at ``max_tokens``.

    Examples
    --------
    >>> expected_output_tokens(6, "zero_shot", 800)
    150
    >>> expected_output_tokens(6, "chain_of_thought", 200)
    200
    """
    tokens = n_features * EXPECTED_OUTPUT_TOKENS_PER_FEATURE
    if strategy == "chain_of_thought":
        tokens += EXPECTED_REASONING_TOKENS
    return min(tokens, max_tokens)


def check_prices(protocol: Protocol, prices: Mapping[str, PriceSpec]) -> None:
    """Raise UserInputError when a budget cap is set but a model reader has no price."""
    if protocol.budget.max_cost_usd is None:
        return
    missing = [
        reader.model
        for reader in protocol.grid.readers
        if isinstance(reader, OpenAIReaderSpec) and reader.model not in prices
    ]
    if missing:
        raise UserInputError(
            f"budget.max_cost_usd is set but model(s) {sorted(set(missing))} have no price; add "
            "them under 'pricing' in the protocol as "
            "'MODEL: {input_per_million: USD, output_per_million: USD}'."
        )


@dataclass(frozen=True)
class CallEstimate:
    """Estimated tokens and cost of one model call."""

    input_tokens: int
    expected_output_tokens: int
    max_output_tokens: int
    expected_cost_usd: float
    max_cost_usd: float


def estimate_call(
    texts: list[str],
    n_images: int,
    image_size: int,
    *,
    detail: str,
    n_features: int,
    strategy: str,
    max_tokens: int,
    price: PriceSpec | None,
) -> CallEstimate:
    """Estimate the tokens and cost of one call from its texts and square images.

    Examples
    --------
    >>> price = PriceSpec(input_per_million=1.0, output_per_million=2.0)
    >>> estimate = estimate_call(["x" * 400], 2, 256, detail="low", n_features=2,
    ...                          strategy="zero_shot", max_tokens=100, price=price)
    >>> estimate.input_tokens, estimate.expected_output_tokens, estimate.max_cost_usd
    (270, 50, 0.00047)
    """
    input_tokens = sum(text_tokens(text) for text in texts) + n_images * image_tokens(
        image_size, image_size, detail
    )
    expected = expected_output_tokens(n_features, strategy, max_tokens)
    return CallEstimate(
        input_tokens,
        expected,
        max_tokens,
        call_cost_usd(price, input_tokens, expected),
        call_cost_usd(price, input_tokens, max_tokens),
    )
