"""The delivery-chain corpus (``tests/corpus/``) through the eql peer, beside chainwatch's score of the same files.

The peer is ``bench/eql_peer.py``'s AN1316 sequence, fed every record of a scenario converted to slim events and
sorted by event time (the most favourable order for a sequence). A scenario counts as found by eql when a sequence's
stage-3 event is the labelled stage-3 process or one of the labelled egress processes; any sequence on a benign
install is a false alert. Needs ``bench/requirements.txt``.

    .venv/bin/python bench/corpus_vs_eql.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import eql_peer

from scripts.score_corpus import CORPUS, score_corpus

MAPPERS = {"eslogger.jsonl": eql_peer.convert_eslogger, "elastic-network.ndjson": eql_peer.convert_ecs,
           "unifiedlog.ndjson": eql_peer.convert_unified}


def eql_detections(folder: Path, work: Path) -> list[list[dict[str, object]]]:
    slim = []
    for name, mapper in MAPPERS.items():
        path = folder / name
        if not path.exists():
            continue
        for line in path.read_bytes().splitlines():
            if line.strip():
                try:
                    slim.append(mapper(orjson.loads(line), folder.name))
                except (KeyError, TypeError, ValueError, StopIteration, AttributeError):
                    continue  # a record the peer's converter does not know is simply not an event for it
    slim.sort(key=lambda e: e.get("timestamp") or 0)
    out = work / f"{folder.name}.ndjson"
    out.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in slim))
    return eql_peer.run(out)["detections"]  # type: ignore[no-any-return]


def main() -> int:
    ours = {s.name: s for s in score_corpus().scenarios}
    found_eql = found_ours = detectable = benign_eql = benign_ours = 0
    print(f"{'scenario':<28} {'label':<10} {'chainwatch':<12} eql")
    with tempfile.TemporaryDirectory() as scratch:
        for folder in sorted(p for p in CORPUS.iterdir() if (p / "expected.json").is_file()):
            label = orjson.loads((folder / "expected.json").read_bytes())
            score = ours[folder.name]
            pids = {label["stage3"]["pid"], *(e["pid"] for e in label.get("egress", []))} if label["malicious"] \
                else set()
            sequences = eql_detections(folder, Path(scratch))
            hit = any(seq[2].get("pid") in pids for seq in sequences)
            we = score.alert is not None and not score.problems if label["malicious"] else \
                any(f.is_alert for f in score.findings)
            if label["malicious"] and label.get("expect_detect", True):
                detectable += 1
                found_eql += hit
                found_ours += we
            elif not label["malicious"]:
                benign_eql += bool(sequences)
                benign_ours += we
            kind = "benign" if not label["malicious"] else (
                "malicious" if label.get("expect_detect", True) else "unseeable")
            eql_text = "found" if hit else (f"{len(sequences)} false" if sequences and not label["malicious"]
                                            else "-")
            print(f"{folder.name:<28} {kind:<10} {'alert' if we else '-':<12} {eql_text}")
    print(f"detectable chains found: chainwatch {found_ours}/{detectable}, eql {found_eql}/{detectable}; "
          f"benign installs alerting: chainwatch {benign_ours}, eql {benign_eql}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
