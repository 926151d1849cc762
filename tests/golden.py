"""Where the tests find the DECTRIS golden files (real EIGER2 stream messages and data files).

They are not part of this repository (their licence is unknown: test reference only, never shipped). In order:
1. $OPENDCU_GOLDEN, a folder laid out like `shared/golden`;
2. `shared/golden` next to (or above) the checkout, or $OPENDCU_SHARED/golden;
3. a download from the public DECTRIS repositories at pinned commits into ~/.cache/opendcu/golden (or
   $OPENDCU_GOLDEN_CACHE), every file checked against its sha256 below; `expected.json` (our decode results of
   those files) is `tests/golden_expected.json`.
Whichever is used, each file must have the sha256 of this table: a changed golden file fails loudly.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: the public sources, at the commits the files were taken from (shared/golden/README.md)
STREAM_SOURCE = (
    "https://raw.githubusercontent.com/dectris/documentation/"
    "9e25f07c708b61448275a932d4061513e2b64839/stream_v2/test_data/"
)
H5_SOURCE = "https://raw.githubusercontent.com/dectris/h5-testfiles/6f850de168c3798828901dcb04de312efd43ea12/"

#: sha256 of every golden file, by its path inside the golden folder
SHA256 = {
    "h5-testfiles/datasets_eiger2/eiger2_simread7_2datafiles_4images_bslz4_data_000001.h5": "07483feb386f326df2b8d1dc8e6615bfb77fb7d19b695f187268b9639fcaab4f",
    "h5-testfiles/datasets_eiger2/eiger2_simread7_2datafiles_4images_bslz4_data_000002.h5": "611ac2dfcfc6e16f0728df13a93e99a70ca058bf1fc301bf6f8158c3c92ad9f2",
    "h5-testfiles/datasets_eiger2/eiger2_simread7_2datafiles_4images_bslz4_uint32_data_000001.h5": "4a1eed5a75a5a6dc21f803b0fefb849fbfb99ee7c85169d85df3eae1949ccb08",
    "h5-testfiles/datasets_eiger2/eiger2_simread7_2datafiles_4images_bslz4_uint32_data_000002.h5": "7c8880f7b1a8492a56bbdf5640d6a9040cab6e5c29e2f65c85025daaf7850d38",
    "h5-testfiles/datasets_eiger2/eiger2_simread7_2datafiles_4images_bslz4_uint8_data_000001.h5": "a24c9eb6f16f531698b34fd8edc228d1fe6d72a6d341393e6228bd78cc2ff9e3",
    "h5-testfiles/datasets_eiger2/eiger2_simread7_2datafiles_4images_bslz4_uint8_data_000002.h5": "9ba73543081cac154cff6a5187dd8bc09e30eed41b7d4d213741c10114477ccb",
    "h5-testfiles/datasets_eiger2/eiger2_simread7_2datafiles_4images_lz4_data_000001.h5": "6159c764bbaeda6721d8ff84423071fa2a448c8db129bd076d4e7b59f9258563",
    "h5-testfiles/datasets_eiger2/eiger2_simread7_2datafiles_4images_lz4_data_000002.h5": "86a9c7cd9abf08a63685bb2b89996eb6a137b84472dc8450ea6f76b61031ffdf",
    "stream_v2/r500k_bm_bslz4_16bit/000001.cbor": "b16f105ae1c79f3e023b1bddbeecb7192638fe70cf71c25a618908e931fdee11",
    "stream_v2/r500k_bm_bslz4_16bit/000002.cbor": "0b7abf417a00c12211f079a23de6ec62f5795ccaaf5dcd92ac32f14d08df5912",
    "stream_v2/r500k_bm_bslz4_16bit/000003.cbor": "d85514789e6d757ae2bd32222b44f7fddce2fa1a6dfadf0946703df93061ba1f",
    "stream_v2/r500k_bm_bslz4_16bit/000011.cbor": "0a38f7192df6be816e4a08ae1364dcf67b5ac2560ad1792aa9f7951e817ee700",
    "stream_v2/r500k_bm_bslz4_32bit/000001.cbor": "b5e28e3c6114bbdef6b5d131ea8bc7b84c785f7fe6e7b2c64271a77f66f3364d",
    "stream_v2/r500k_bm_bslz4_32bit/000002.cbor": "12556e44c651367c99dc89460915f3229fb014317c2de8781b37e4a843a2935d",
    "stream_v2/r500k_bm_bslz4_32bit/000003.cbor": "091724a8b0fb1e40c1c46f2592daa76c65ac02f8a090ec98d618ecec3a6b8225",
    "stream_v2/r500k_bm_bslz4_32bit/000011.cbor": "44c83a2450c6e4ce15cc6e679a91da48df2da9ff8c134e4061723ddb5d101fd8",
    "stream_v2/r500k_bm_bslz4_8bit/000001.cbor": "36cc4c25a27aa4079412bdaf52c008b5867336e2d45b6bc4c6d10ad7dda11f48",
    "stream_v2/r500k_bm_bslz4_8bit/000002.cbor": "db25248f8befd808b695ddf867ca5139c5648ac7ba3bd38aa129abddd1c1d141",
    "stream_v2/r500k_bm_bslz4_8bit/000003.cbor": "668076a19a83497f158f484702806fe6aa5b3554fe3f8359d8d2db023892db11",
    "stream_v2/r500k_bm_bslz4_8bit/000011.cbor": "83ed4e443134bdd0a73703c47cd34b95745e4051d74a90d9ef57388df85f02a6",
    "stream_v2/r500k_bm_lz4_16bit/000001.cbor": "f06c6c0a9662a9252b232f39add675d86bb1ed28d68a6cccb0988240c20ea423",
    "stream_v2/r500k_bm_lz4_16bit/000002.cbor": "e50589254b4f5c714c2dcc07db8738d8be0e06889eac802e01d42606342a248e",
    "stream_v2/r500k_bm_lz4_16bit/000003.cbor": "8455769a583ec75ccbc2a92b84044dcf7474eaeea0bbbff223a802cc51c6e72b",
    "stream_v2/r500k_bm_lz4_16bit/000011.cbor": "b34e2a5f8902172bfd82d9005abfec58865598f1533f6b7250d341882d9c36b9",
    "stream_v2/r500k_bm_lz4_8bit/000001.cbor": "3c06d2fc773a9d83ba30db1b3ae6f79d3e7369c822157005f6092202d766345a",
    "stream_v2/r500k_bm_lz4_8bit/000002.cbor": "10067bf49b4c12cad7a04ddeae89a4b17298bdb8c669310e9e2718d4baf493e5",
    "stream_v2/r500k_bm_lz4_8bit/000003.cbor": "0c2e3ae6c2071db2747c553c5d0a93b82ebfc33cfea9a4e087aba6dae4add29c",
    "stream_v2/r500k_bm_lz4_8bit/000011.cbor": "348b79f6a52b732485bc66b89b92ab92cc9d8027b526ec7287690d90a37cd695",
}
EXPECTED_SHA256 = "2a5c01a8564738ac84c0c40e5523e0bacd13ca137e17264a22d0bcc6a08ec847"


def source_url(relative: str) -> str:
    """The public URL of a golden file."""
    if relative.startswith("stream_v2/"):
        return STREAM_SOURCE + relative.removeprefix("stream_v2/")
    if relative.startswith("h5-testfiles/"):
        return H5_SOURCE + relative.removeprefix("h5-testfiles/")
    raise KeyError(relative)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mismatches(folder: Path) -> list[str]:
    """The golden files that are missing in `folder` or differ from the table."""
    bad = [rel for rel, digest in SHA256.items() if not (folder / rel).is_file() or sha256_of(folder / rel) != digest]
    if not (folder / "expected.json").is_file() or sha256_of(folder / "expected.json") != EXPECTED_SHA256:
        bad.append("expected.json")
    return bad


def download(folder: Path, timeout: float = 60.0) -> Path:
    """Fetch every missing golden file into `folder`, checking each against its sha256."""
    for rel, digest in SHA256.items():
        target = folder / rel
        if target.is_file() and sha256_of(target) == digest:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(source_url(rel), timeout=timeout) as response:  # noqa: S310 (fixed https URLs)
            data = response.read()
        got = hashlib.sha256(data).hexdigest()
        if got != digest:
            raise RuntimeError(f"golden file {rel} from {source_url(rel)}: sha256 {got}, expected {digest}")
        part = target.with_name(target.name + ".part")
        part.write_bytes(data)
        part.replace(target)
    shutil.copyfile(HERE / "golden_expected.json", folder / "expected.json")
    return folder


def find_golden(shared: Path | None) -> Path:
    """The golden folder (see the module docstring); raises RuntimeError saying why none could be had."""
    explicit = os.environ.get("OPENDCU_GOLDEN")
    candidates = [Path(explicit)] if explicit else []
    if shared is not None:
        candidates.append(shared / "golden")
    for folder in candidates:
        if folder.is_dir():
            bad = mismatches(folder)
            if bad:
                raise RuntimeError(f"golden files in {folder} missing or changed: {', '.join(bad)}")
            return folder
    cache = Path(os.environ.get("OPENDCU_GOLDEN_CACHE", Path.home() / ".cache" / "opendcu" / "golden"))
    try:
        return download(cache)
    except OSError as exc:
        raise RuntimeError(f"no golden files: set OPENDCU_GOLDEN, or let the tests download them ({exc})") from exc
