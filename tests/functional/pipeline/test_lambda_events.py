"""The ``sam local invoke`` event files (``events/lambda/``) through the real handlers (``functions/*/app.py``)
under moto, the generator's drift check, and the folder walks that must not read them as telemetry."""

from __future__ import annotations

import base64
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from pipeline_support import drain_queue, scan

from chainwatch.app.local import LambdaContext, load_handler, telemetry_records
from chainwatch.sources.reader import iter_files

ROOT = Path(__file__).resolve().parents[3]
LAMBDA = ROOT / "events" / "lambda"
sys.path.insert(0, str(ROOT / "scripts"))
import make_lambda_events  # noqa: E402 - a script, imported by path


def _event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((LAMBDA / name).read_text())
    return loaded


@pytest.fixture
def handler_env(aws_names: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The environment ``template.yaml`` gives both functions (names from the moto resources), a file sink."""
    out = tmp_path / "findings.jsonl"
    for key, value in {
        "STATE_TABLE": aws_names["ChainStateTable"], "FINDINGS_TABLE": aws_names["FindingsTable"],
        "DELIVERIES_TABLE": aws_names["DeliveriesTable"], "QUARANTINE_QUEUE_URL": aws_names["QuarantineQueue"],
        "DEAD_LETTER_QUEUE_URL": aws_names["DispatchDeadLetterQueue"],
        "SINKS_JSON": json.dumps([{"kind": "file", "name": "file", "path": str(out)}]),
        "POWERTOOLS_TRACE_DISABLED": "1", "POWERTOOLS_METRICS_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "chainwatch", "POWERTOOLS_LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(key, value)
    return out


def test_lambda_events_files_match_the_telemetry_generator_check_passes() -> None:
    assert make_lambda_events.main(["--check"]) == 0


def test_lambda_events_check_detects_a_drifted_file(tmp_path: Path) -> None:
    for path in LAMBDA.iterdir():
        shutil.copy(path, tmp_path / path.name)
    assert make_lambda_events.main(["--check", "--out-dir", str(tmp_path)]) == 0
    drifted = tmp_path / "correlate-kinesis.json"
    event = json.loads(drifted.read_text())
    event["Records"].pop()
    drifted.write_text(json.dumps(event))
    assert make_lambda_events.main(["--check", "--out-dir", str(tmp_path)]) == 1


def test_lambda_events_kinesis_batch_is_the_stream_shape_with_hosts_and_one_poison_record() -> None:
    records = _event("correlate-kinesis.json")["Records"]
    telemetry = list(telemetry_records([ROOT / "events"]))
    assert len(records) == len(telemetry) + 1
    sequences = [int(r["kinesis"]["sequenceNumber"]) for r in records]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    assert all(len(str(s)) == 56 for s in sequences)
    assert {r["kinesis"]["partitionKey"] for r in records} == {"mac-01", "mac-02"}
    assert all(r["eventSource"] == "aws:kinesis" and r["eventID"].endswith(r["kinesis"]["sequenceNumber"])
               for r in records)
    payloads = [base64.b64decode(r["kinesis"]["data"]) for r in records]
    broken = []
    for payload in payloads:
        try:
            orjson.loads(payload)
        except orjson.JSONDecodeError:
            broken.append(payload)
    assert len(broken) == 1


def test_lambda_events_correlate_handler_quarantines_the_poison_and_writes_the_outbox(
        handler_env: Path, aws_names: dict[str, str]) -> None:
    import boto3

    session = boto3.session.Session(region_name="us-east-1")
    correlate = load_handler("correlate", ROOT)

    response = correlate.lambda_handler(_event("correlate-kinesis.json"), LambdaContext("chainwatch-correlate"))

    assert response == {"batchItemFailures": []}
    [poison] = drain_queue(session, aws_names["QuarantineQueue"])
    assert poison["reason"].startswith("not valid JSON") and poison["partition_key"] == "mac-01"
    outbox = _event("dispatch-outbox.json")["Records"]
    expected = {r["dynamodb"]["NewImage"]["finding_id"]["S"]: r["dynamodb"]["NewImage"] for r in outbox}
    written = {str(i["finding_id"]): i for i in scan(session, aws_names["FindingsTable"])}
    assert set(written) == set(expected) and len(expected) == 2
    for finding_id, image in expected.items():
        # The outbox event file holds what correlate writes (the processing time aside).
        stored = orjson.loads(str(written[finding_id]["document"]))
        generated = orjson.loads(image["document"]["S"])
        stored["metadata"].pop("processed_time")
        generated["metadata"].pop("processed_time")
        assert stored == generated
        assert written[finding_id]["digest"] == image["digest"]["S"]
        assert int(written[finding_id]["revision"]) == int(image["revision"]["N"])


def test_lambda_events_dispatch_handler_delivers_every_outbox_finding(handler_env: Path) -> None:
    dispatch = load_handler("dispatch", ROOT)
    event = _event("dispatch-outbox.json")

    response = dispatch.lambda_handler(event, LambdaContext("chainwatch-dispatch"))

    assert response == {"batchItemFailures": []}
    delivered = [orjson.loads(line) for line in handler_env.read_bytes().splitlines()]
    assert sorted(d["finding_id"] for d in delivered) == sorted(
        r["dynamodb"]["NewImage"]["finding_id"]["S"] for r in event["Records"])
    assert all(d["finding"]["class_uid"] == 2004 for d in delivered)


def test_lambda_events_folder_walk_skips_the_event_files_but_reads_them_when_named() -> None:
    walked = list(iter_files([ROOT / "events"]))
    assert walked and not any(LAMBDA in path.parents for path in walked)
    assert list(iter_files([LAMBDA / "correlate-kinesis.json"])) == [LAMBDA / "correlate-kinesis.json"]


@pytest.fixture(scope="module")
def sam() -> Path:
    """The SAM CLI from its own virtual environment, installed by ``scripts/sam_cli.py`` (``scripts/check.py`` runs
    it before pytest: tests never install anything). ``CHAINWATCH_SKIP_SAM=1`` skips the SAM tests."""
    if os.environ.get("CHAINWATCH_SKIP_SAM") == "1":
        pytest.skip("CHAINWATCH_SKIP_SAM=1")
    import sam_cli  # scripts/, on sys.path above

    found = sam_cli.installed()
    if found is None:
        pytest.skip("the SAM CLI is not installed: run scripts/sam_cli.py (scripts/check.py does)")
    return found


def _sam(sam: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # No AWS credentials and no metadata-service lookups: validation (translator + cfn-lint) is offline.
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "AWS_DEFAULT_REGION": "us-east-1",
           "SAM_CLI_TELEMETRY": "0", "AWS_EC2_METADATA_DISABLED": "true"}
    return subprocess.run([str(sam), *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=300,
                          env=env)


def test_lambda_events_sam_validate_and_lint_pass(sam: Path, tmp_path: Path) -> None:
    template = str(ROOT / "template.yaml")
    translated = _sam(sam, tmp_path, "validate", "--template", template)
    linted = _sam(sam, tmp_path, "validate", "--lint", "--template", template)

    assert translated.returncode == 0, translated.stdout + translated.stderr
    assert "is a valid SAM Template" in translated.stdout
    assert linted.returncode == 0, linted.stdout + linted.stderr


@pytest.mark.parametrize(("change", "lint", "message"), [
    # The SAM translator (plain `sam validate`) rejects an unknown event property; cfn-lint 1.58 would not.
    (("            BatchSize: 50\n", "            BatchSize: 50\n            Bogus: true\n"), False,
     "property Bogus not defined"),
    # cfn-lint (`--lint`) rejects a runtime Lambda no longer runs.
    (("Runtime: python3.12", "Runtime: python2.7"), True, "E2533"),
])
def test_lambda_events_sam_validate_broken_template_fails(sam: Path, tmp_path: Path, change: tuple[str, str],
                                                          lint: bool, message: str) -> None:
    original = (ROOT / "template.yaml").read_text()
    assert change[0] in original
    broken = tmp_path / "template.yaml"
    broken.write_text(original.replace(change[0], change[1], 1))
    result = _sam(sam, tmp_path, "validate", *(["--lint"] if lint else []), "--template", str(broken))

    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def _python312() -> str | None:
    """A Python 3.12 interpreter (``sam build`` needs one on PATH for ``BuildMethod: python3.12``), if any:
    ``python3.12`` on PATH when it runs (a pyenv shim may not), else a pyenv 3.12 install."""
    candidates = [shutil.which("python3.12") or "", *sorted(glob.glob(os.path.expanduser(
        "~/.pyenv/versions/3.12*/bin/python3.12")), reverse=True)]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "--version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0 and probe.stdout.startswith("Python 3.12"):
            return candidate
    return None


LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024  # function code plus all its layers, unzipped


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def test_lambda_events_sam_build_layer_for_arm64_fits_lambda(sam: Path, tmp_path: Path) -> None:
    # sam build fetches the arm64 wheels from the package index on every build: tests talk only to loopback, so
    # this one runs when asked for (CHAINWATCH_SAM_BUILD=1), e.g. before a release.
    if os.environ.get("CHAINWATCH_SAM_BUILD") != "1":
        pytest.skip("sam build downloads packages: set CHAINWATCH_SAM_BUILD=1 to run it")
    python312 = _python312()
    if python312 is None:
        pytest.skip("sam build needs python3.12 (the template's BuildMethod); none found on PATH or in pyenv")
    out = tmp_path / "build"
    env = {"PATH": f"{Path(python312).parent}:{os.environ['PATH']}", "HOME": str(tmp_path),
           "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0", "AWS_EC2_METADATA_DISABLED": "true",
           "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", os.path.expanduser("~/.cache/pip"))}
    result = subprocess.run([str(sam), "build", "--template", str(ROOT / "template.yaml"), "--base-dir", str(ROOT),
                             "--build-dir", str(out)], cwd=tmp_path, capture_output=True, text=True, check=False,
                            timeout=600, env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    site = out / "ChainwatchLayer" / "python"
    assert (site / "chainwatch" / "sinks" / "security_lake.py").is_file()
    assert (site / "chainwatch" / "policy" / "default.yaml").is_file()
    # Native wheels for the Lambda's arm64 python3.12, not this machine's x86_64 ones.
    assert (site / "pyarrow" / "lib.cpython-312-aarch64-linux-gnu.so").is_file()
    assert (site / "orjson" / "orjson.cpython-312-aarch64-linux-gnu.so").is_file()
    pins = [line.split("==") for line in (ROOT / "layers" / "requirements.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#")]
    for name, version in pins:
        dist = name.split("[")[0].replace("-", "_").lower()
        assert any(d.name.lower() == f"{dist}-{version}.dist-info" for d in site.iterdir()), (name, version)
    for function in ("CorrelateFunction", "DispatchFunction"):
        assert (out / function / "app.py").is_file()
        assert _size(out / function) + _size(out / "ChainwatchLayer") < LAMBDA_UNZIPPED_LIMIT
    shutil.rmtree(out)  # ~200 MB; pytest keeps the last runs' temporary directories


def test_lambda_events_settings_endpoint_from_the_declared_template_variable() -> None:
    from chainwatch.app.settings import from_env

    base = {"STATE_TABLE": "s", "FINDINGS_TABLE": "f", "DELIVERIES_TABLE": "d"}
    assert from_env({**base, "CHAINWATCH_ENDPOINT_URL": "http://host.docker.internal:5000"}).endpoint_url == \
        "http://host.docker.internal:5000"
    assert from_env({**base, "CHAINWATCH_ENDPOINT_URL": ""}).endpoint_url is None  # as deployed
