"""The committed models are what the build produces, signed, and self-consistent."""

from __future__ import annotations

from pathlib import Path

from models import BUILT_DIR, build, manifest, signing


def test_build_is_deterministic_and_committed_files_are_current(tmp_path: Path) -> None:
    build.build(tmp_path, signing.dev_private_key())
    for path in sorted(tmp_path.iterdir()):
        committed = Path(BUILT_DIR) / path.name
        assert committed.exists(), f"{path.name} not committed: run python -m models.build"
        assert committed.read_bytes() == path.read_bytes(), f"{path.name} is stale: run python -m models.build"


def test_committed_dev_public_key_matches_the_seed() -> None:
    key = signing.load_public_key(signing.DEV_PUBLIC_KEY_FILE)
    derived = signing.public_raw(signing.dev_private_key().public_key())
    assert signing.public_raw(key) == derived == signing.public_raw(signing.dev_public_key())


def test_manifests_verify_and_name_their_model() -> None:
    key = signing.load_public_key(signing.DEV_PUBLIC_KEY_FILE)
    trusted = {signing.key_id(key): key}
    paths = sorted(Path(BUILT_DIR).glob("*" + manifest.MANIFEST_SUFFIX))
    assert {p.name for p in paths} == {"news2.manifest.json", "bp_category.manifest.json", "pews.manifest.json"}
    for p in paths:
        raw = manifest.read(p)
        m = manifest.parse(raw)
        assert signing.verify(raw, trusted) == signing.key_id(key)
        assert manifest.sha256_file(p.parent / m.model_file) == m.sha256
        assert len(m.self_test) >= 5


def test_signature_covers_every_member() -> None:
    raw = manifest.read(Path(BUILT_DIR) / "news2.manifest.json")
    key = signing.dev_private_key().public_key()
    trusted = {signing.key_id(key): key}
    for member, value in [("version", "9.9.9"), ("sha256", "0" * 64), ("tolerance", 1.0)]:
        tampered = {**raw, member: value}
        try:
            signing.verify(tampered, trusted)
        except signing.SignatureError as exc:
            assert exc.reason == "bad_signature"
        else:
            raise AssertionError(f"changing {member} kept the signature valid")
