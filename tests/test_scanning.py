"""The header scan's content keys: a prefix for long files, yet duplicates found exactly."""
import hashlib
import shutil

import numpy as np
from PIL import Image

from core.scanning import PREFIX_BYTES, scan
from core.sources import SourceSpec
from core.splits import duplicate_groups
from tests.conftest import SHARED_DATA


def _long_files(folder):
    """Four real blood-cell images as uncompressed BMPs (far longer than the prefix): the original, a
    true copy, a twin differing only in its top row (BMP stores rows bottom-up, so the change sits at
    the end of the file) and another cell."""
    sources = sorted((SHARED_DATA / "blood_pbc" / "neutrophil").glob("*.jpg"))[:2]
    cells = folder / "neutrophil"
    cells.mkdir(parents=True)
    pixels = np.asarray(Image.open(sources[0]).convert("RGB")).copy()
    Image.fromarray(pixels).save(cells / "original.bmp")
    shutil.copy(cells / "original.bmp", cells / "copy.bmp")
    pixels[0, :8] = 255 - pixels[0, :8]
    Image.fromarray(pixels).save(cells / "twin.bmp")
    Image.open(sources[1]).convert("RGB").save(cells / "other.bmp")
    return {path.stem: path.read_bytes() for path in cells.iterdir()}


def test_files_sharing_a_prefix_are_told_apart_and_true_copies_found(tmp_path):
    content = _long_files(tmp_path)
    original, twin = content["original"], content["twin"]
    assert len(original) == len(twin) > PREFIX_BYTES and original[:PREFIX_BYTES] == twin[:PREFIX_BYTES]
    assert original != twin  # the premise: same size, same first bytes, different content

    manifest = scan(SourceSpec(str(tmp_path)))
    dups = duplicate_groups(manifest)
    manifest = manifest.set_index("id")
    assert sorted(dups["id"]) == ["neutrophil/copy.bmp", "neutrophil/original.bmp"]
    for name in ("original", "copy", "twin"):  # their shared prefix key made the scan read them whole
        row = manifest.loc[f"neutrophil/{name}.bmp"]
        assert row["hash_exact"] and row["hash"] == hashlib.blake2b(content[name], digest_size=16).hexdigest()
    other = manifest.loc["neutrophil/other.bmp"]
    assert not other["hash_exact"]  # no other file shares its key: read no further than the prefix
    assert other["hash"] != hashlib.blake2b(content["other"], digest_size=16).hexdigest()

    verified = scan(SourceSpec(str(tmp_path)), verify=True)
    assert sorted(duplicate_groups(verified)["id"]) == ["neutrophil/copy.bmp", "neutrophil/original.bmp"]
    verified = verified.set_index("id")
    assert verified["hash_exact"].all() and verified["verified"].all()
    assert verified.loc["neutrophil/other.bmp", "hash"] == hashlib.blake2b(content["other"],
                                                                            digest_size=16).hexdigest()


def test_a_file_added_later_with_a_known_prefix_is_compared_whole(tmp_path):
    """The collision check runs over cached facts too: a new copy of a file scanned earlier is found."""
    _long_files(tmp_path)
    (tmp_path / "neutrophil" / "copy.bmp").unlink()
    first = scan(SourceSpec(str(tmp_path)))
    assert duplicate_groups(first).empty
    shutil.copy(tmp_path / "neutrophil" / "other.bmp", tmp_path / "neutrophil" / "other again.bmp")
    dups = duplicate_groups(scan(SourceSpec(str(tmp_path))))
    assert sorted(dups["id"]) == ["neutrophil/other again.bmp", "neutrophil/other.bmp"]


def test_short_files_get_their_exact_hash_from_the_header_scan():
    manifest = scan(SourceSpec(str(SHARED_DATA / "bccd_crops" / "cell_crops")))
    short = manifest[manifest["bytes"] <= PREFIX_BYTES].head(20)  # the small platelet crops
    assert len(short) and short["hash_exact"].all()
    for row in short.itertuples():
        with open(row.path, "rb") as handle:
            assert row.hash == hashlib.blake2b(handle.read(), digest_size=16).hexdigest()


def test_a_file_edited_in_place_past_its_prefix_gets_a_new_exact_hash(tmp_path):
    """Same size, same first bytes, new pixels: the prefix key alone would not change, and the image
    cache keyed by it would serve the old pixels."""
    _long_files(tmp_path)
    path = tmp_path / "neutrophil" / "other.bmp"
    before = scan(SourceSpec(str(tmp_path))).set_index("id").loc["neutrophil/other.bmp"]
    assert not before["hash_exact"]
    data = bytearray(path.read_bytes())
    data[-16:] = bytes(255 - b for b in data[-16:])  # BMP rows run bottom-up: this is the image's top row
    path.write_bytes(bytes(data))
    after = scan(SourceSpec(str(tmp_path))).set_index("id").loc["neutrophil/other.bmp"]
    assert after["bytes"] == before["bytes"]
    assert after["hash_exact"] and after["hash"] == hashlib.blake2b(bytes(data), digest_size=16).hexdigest()
    assert after["hash"] != before["hash"]
