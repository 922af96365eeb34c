"""`corral offers`: the offline catalog, filtered, with each price's source and date."""

from __future__ import annotations

from typer.testing import CliRunner

from corral.cli.main import app


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["offers", *args], env={"COLUMNS": "250"})
    return result.exit_code, result.output


def test_filters_by_model_and_count_cheapest_per_gpu_first() -> None:
    code, out = run("--gpu", "H100:8")
    assert code == 0
    first = [line.split("│")[1].strip() for line in out.splitlines()
             if line.startswith("│") and line.split("│")[1].strip()]
    assert first == ["lambda", "gcp", "aws"]
    assert "A100" not in out and "2.99" in out and "12.29" in out


def test_provider_filter_and_sources() -> None:
    code, out = run("--provider", "aws")
    providers = {line.split("│")[1].strip() for line in out.splitlines()
                 if line.startswith("│") and line.split("│")[1].strip()}
    assert code == 0 and providers == {"aws"}
    assert "p5.48xlarge" in out and "g6.xlarge" in out and "aws.amazon.com" in out


def test_spot_says_where_spot_prices_come_from() -> None:
    code, out = run("--spot")
    assert code == 0 and "DescribeSpotPriceHistory" in out


def test_a_malformed_gpu_names_the_option() -> None:
    code, out = run("--gpu", "H100:x")
    assert code != 0 and "--gpu wants MODEL or MODEL:COUNT" in out
