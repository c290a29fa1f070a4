"""Brain MRI loading: grids and affines of the MRIcron files, resampling, label sets, slab splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from excite.datasets import BRAIN_MRI, axial_slabs
from excite.datasets.brain_mri import (
    aal_lobe_table,
    downsample_labels,
    load_brain_mri,
    load_nifti,
    resample,
    same_grid,
    slab_indices,
)

pytest.importorskip("nibabel")
needs_data = pytest.mark.skipif(BRAIN_MRI.find() is None, reason="mricron-data not installed")

MNI_1MM = np.array([[1.0, 0, 0, -90], [0, 1, 0, -125], [0, 0, 1, -71], [0, 0, 0, 1]])


@needs_data
def test_grids_and_affines_of_the_debian_files():
    folder = BRAIN_MRI.locate()
    ch2, ch2_affine = load_nifti(folder / "ch2.nii.gz")
    aal, aal_affine = load_nifti(folder / "aal.nii.gz")
    assert ch2.shape == (181, 217, 181) and aal.shape == (181, 217, 181)
    np.testing.assert_allclose(ch2_affine, MNI_1MM)
    assert same_grid(ch2.shape, ch2_affine, aal.shape, aal_affine)
    assert int(aal.max()) == 116 and len(np.unique(aal)) == 117
    _, brodmann_affine = load_nifti(folder / "brodmann.nii.gz")
    np.testing.assert_allclose(brodmann_affine, MNI_1MM)
    better, better_affine = load_nifti(folder / "ch2better.nii.gz")
    assert better.shape == (301, 370, 316)
    np.testing.assert_allclose(np.diag(better_affine)[:3], [0.5, 0.5, 0.5])
    assert not same_grid(ch2.shape, ch2_affine, better.shape, better_affine)
    ho, ho_affine = load_nifti(folder / "HarvardOxford-cort-maxprob-thr0-1mm.nii.gz")
    assert ho.shape == (182, 218, 182) and ho_affine[0, 0] == -1.0
    assert not same_grid(ch2.shape, ch2_affine, ho.shape, ho_affine)


@needs_data
def test_flipped_harvard_oxford_resamples_exactly_onto_the_ch2_grid():
    folder = BRAIN_MRI.locate()
    ho, ho_affine = load_nifti(folder / "HarvardOxford-cort-maxprob-thr0-1mm.nii.gz")
    resampled = resample(ho, ho_affine, (181, 217, 181), MNI_1MM, mode="nearest")
    # World x = -90 + i on ch2's grid and x = 90 - i' on the flipped grid: i' = 180 - i; y, z shift by 1.
    world_to_ho = np.linalg.inv(ho_affine) @ MNI_1MM
    np.testing.assert_allclose(world_to_ho[:3, :3], np.diag([-1.0, 1.0, 1.0]))
    np.testing.assert_allclose(world_to_ho[:3, 3], [180.0, 1.0, 1.0])
    expected = ho[180::-1, 1:218, 1:182]
    np.testing.assert_array_equal(resampled, expected)


def test_resample_linear_matches_a_hand_computed_affine_map():
    rng = np.random.default_rng(0)
    source = rng.random((6, 7, 8)).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    target_affine = np.diag([1.0, 1.0, 1.0, 1.0])
    out = resample(source, affine, (10, 12, 14), target_affine, mode="bilinear")
    # Target voxel (i, j, k) sits at source voxel (i/2, j/2, k/2): trilinear interpolation by hand.
    for i, j, k in [(0, 0, 0), (3, 5, 7), (9, 11, 13), (4, 1, 10)]:
        x, y, z = i / 2, j / 2, k / 2
        x0, y0, z0 = int(np.floor(x)), int(np.floor(y)), int(np.floor(z))
        value = 0.0
        for dx in (0, 1):
            for dy in (0, 1):
                for dz in (0, 1):
                    xi, yi, zi = min(x0 + dx, 5), min(y0 + dy, 6), min(z0 + dz, 7)
                    weight = (1 - abs(x - (x0 + dx))) * (1 - abs(y - (y0 + dy))) * (1 - abs(z - (z0 + dz)))
                    value += max(weight, 0.0) * source[xi, yi, zi]
        assert out[i, j, k] == pytest.approx(value, abs=1e-5)
    with pytest.raises(ValueError, match="mode"):
        resample(source, affine, (2, 2, 2), target_affine, mode="cubic")


def test_downsample_labels_takes_the_block_mode():
    labels = torch.zeros(4, 4, 4, dtype=torch.long)
    labels[:2, :2, :2] = 3
    labels[0, 0, 0] = 5
    labels[2:, 2:, 2:] = 7
    labels[3, 3, 3] = 7
    small = downsample_labels(labels, 2)
    assert small.shape == (2, 2, 2)
    assert small[0, 0, 0] == 3 and small[1, 1, 1] == 7 and small[0, 1, 0] == 0


def test_axial_slabs_are_disjoint_with_gaps():
    slabs = axial_slabs(5, 130, train=12, val=4, test=4, gap=2)
    train, val, test = (set(slab_indices(slabs[s])) for s in ("train", "val", "test"))
    assert train and val and test
    assert not (train & val or train & test or val & test)
    assert min(train | val | test) >= 5 and max(train | val | test) < 130
    for held_out in (val, test):
        distance = min(abs(a - b) for a in held_out for b in train)
        assert distance >= 3, "no held-out slice may border (or come within the gap of) a training slice"
    for split, size in (("train", 12), ("val", 4), ("test", 4)):
        assert all(b - a == size for a, b in slabs[split])
    # The cycle covers the whole range: slabs of every split appear near the bottom and the top.
    assert min(test) < 40 and max(test) > 95
    with pytest.raises(ValueError, match="too few"):
        axial_slabs(0, 10, train=12)
    with pytest.raises(ValueError, match="gap"):
        axial_slabs(0, 100, gap=-1)


def test_lobe_table_follows_the_aal_codes():
    table = aal_lobe_table()
    regions = {r["name"]: r for r in table["regions"]}
    assert len(regions) == 116 and table["lobes"][0] == "background"
    assert regions["Hippocampus_L"]["lobe"] == "limbic"
    assert regions["Thalamus_R"]["lobe"] == "subcortical"
    assert regions["Vermis_10"]["lobe"] == "cerebellum"
    assert regions["Calcarine_L"]["lobe"] == "occipital"
    assert regions["Heschl_R"]["lobe"] == "temporal"
    assert regions["Precentral_L"]["lobe"] == "frontal"
    assert regions["Postcentral_L"]["lobe"] == "parietal"
    assert regions["Insula_L"]["lobe"] == "insula"


@needs_data
def test_lobe_table_matches_the_installed_label_list():
    folder = BRAIN_MRI.locate()
    listing = folder / "aal.nii.txt"
    if not listing.exists():
        pytest.skip("aal.nii.txt not shipped")
    by_digit = {
        "2": "frontal",
        "3": "insula",
        "4": "limbic",
        "5": "occipital",
        "6": "parietal",
        "7": "subcortical",
        "8": "temporal",
        "9": "cerebellum",
    }
    expected = {}
    for line in listing.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            expected[int(parts[0])] = (parts[1], by_digit[parts[2][0]])
    shipped = {r["index"]: (r["name"], r["lobe"]) for r in aal_lobe_table()["regions"]}
    assert shipped == expected


@needs_data
def test_load_lobes_at_2mm_normalised_cropped_padded():
    volume = load_brain_mri(labels="lobes", downsample=2, pad_multiple=16)
    assert volume.num_classes == 9 and volume.label_names[1] == "frontal"
    assert all(s % 16 == 0 for s in volume.image.shape)
    assert volume.spacing_mm == (2.0, 2.0, 2.0)
    assert "share one grid" in volume.notes[0]
    brain = volume.image[volume.labels > 0]
    assert -1.0 < float(brain.mean()) < 1.5 and 0.2 < float(brain.std()) < 2.0
    present = torch.bincount(volume.labels.flatten(), minlength=9)
    assert bool((present > 0).all()), "every lobe is present"
    first, stop = volume.brain_slices
    assert bool(volume.labels[:, :, first].any()) and not bool(volume.labels[:, :, :first].any())
    assert not bool(volume.labels[:, :, stop:].any())
    images, labels = volume.slices(volume.split_slabs()["test"])
    assert (
        images.shape[1] == 1 and images.shape[0] == labels.shape[0] and images.shape[2:] == labels.shape[1:]
    )


@needs_data
def test_harvard_oxford_load_says_it_resampled():
    volume = load_brain_mri(labels="harvard-oxford", downsample=2)
    assert any("resampled the atlas onto the image grid" in note for note in volume.notes)
    assert volume.num_classes == 49


def test_bad_options_name_the_problem():
    with pytest.raises(ValueError, match="labels must be one of"):
        load_brain_mri(labels="tissue")
    with pytest.raises(ValueError, match="image must be one of"):
        load_brain_mri(image="mni152")
