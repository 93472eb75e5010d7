"""Metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from slimcodec import metrics as M

RATES = [0.1, 0.2, 0.4, 0.8, 1.6]
PSNRS = [27.0, 29.5, 32.0, 34.0, 36.5]


class TestPsnr:
    def test_constant_error_of_5_gives_20_log10_of_51(self):
        a = np.full((8, 6, 3), 100, np.uint8)
        assert M.psnr(a, a + 5) == pytest.approx(20 * math.log10(255 / 5), abs=1e-12)

    def test_error_on_half_the_samples(self):
        a = np.zeros((4, 4, 3), np.uint8)
        b = a.copy()
        b[:2] = 10  # MSE = 100 / 2
        assert M.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 50), abs=1e-12)

    def test_uint8_inputs_do_not_wrap_around(self):
        a = np.full((2, 2, 3), 250, np.uint8)
        b = np.full((2, 2, 3), 5, np.uint8)
        assert M.mse(a, b) == 245**2 and M.mse(b, a) == 245**2

    def test_identical_images_give_infinity(self):
        a = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
        assert M.psnr(a, a) == math.inf

    def test_invalid_shapes_are_rejected(self):
        with pytest.raises(ValueError, match="differ in shape"):
            M.psnr(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))


class TestBpp:
    def test_bpp_is_eight_bits_per_byte_over_pixels(self):
        assert M.bpp(1000, 100, 80) == 1.0
        assert M.bpp(49_152, 768, 512) == 1.0

    def test_invalid_size_is_rejected(self):
        with pytest.raises(ValueError):
            M.bpp(10, 0, 5)


class TestMsSsim:
    def test_identical_images_give_one(self):
        rng = np.random.default_rng(0)
        a = rng.integers(0, 256, (200, 180, 3), dtype=np.uint8)
        assert M.ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)

    def test_flat_images_give_the_luminance_term_of_the_coarsest_scale(self):
        # Flat images: every contrast-structure term is exactly 1, so MS-SSIM is
        # l ** 0.1333 with l = (2 m1 m2 + C1) / (m1² + m2² + C1) (sides multiples of 16).
        a = np.full((256, 192, 3), 100, np.uint8)
        b = np.full((256, 192, 3), 110, np.uint8)
        c1 = (0.01 * 255) ** 2
        lum = (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1)
        assert M.ms_ssim(a, b) == pytest.approx(lum**0.1333, abs=1e-6)

    def test_more_noise_gives_lower_ms_ssim(self):
        rng = np.random.default_rng(1)
        yy, xx = np.mgrid[0:192, 0:256]
        a = np.stack([xx % 256, yy % 256, (xx + yy) % 256], axis=2).astype(np.uint8)
        scores = [M.ms_ssim(a, np.clip(a + rng.normal(0, s, a.shape), 0, 255).astype(np.uint8))
                  for s in (2, 8, 32)]
        assert 1 > scores[0] > scores[1] > scores[2] > 0

    def test_images_too_small_for_five_scales_give_nan(self):
        a = np.zeros((160, 400, 3), np.uint8)
        assert math.isnan(M.ms_ssim(a, a))
        assert M.MS_SSIM_MIN_SIDE == 161

    def test_matches_pytorch_msssim(self):
        torch = pytest.importorskip("torch")
        ref = pytest.importorskip("pytorch_msssim")
        rng = np.random.default_rng(2)
        yy, xx = np.mgrid[0:173, 0:211]  # odd sides exercise the padded pooling
        a = np.stack([xx, yy, (3 * xx + yy) % 256], axis=2).astype(np.uint8)
        b = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8)

        def t(x):
            return torch.from_numpy(x.transpose(2, 0, 1)[None].astype(np.float64))

        expected = ref.ms_ssim(t(a), t(b), data_range=255).item()
        assert M.ms_ssim(a, b) == pytest.approx(expected, abs=1e-5)

    def test_ms_ssim_db(self):
        assert M.ms_ssim_db(0.99) == pytest.approx(20.0)
        assert M.ms_ssim_db(1.0) == math.inf


class TestBjontegaard:
    @pytest.mark.parametrize("method", M.BD_METHODS)
    def test_identical_curves_give_zero(self, method):
        assert M.bd_rate(RATES, PSNRS, RATES, PSNRS, method) == pytest.approx(0.0, abs=1e-9)
        assert M.bd_psnr(RATES, PSNRS, RATES, PSNRS, method) == pytest.approx(0.0, abs=1e-9)

    @pytest.mark.parametrize("method", M.BD_METHODS)
    def test_rate_scaled_by_0_9_gives_minus_10_percent(self, method):
        test = [0.9 * r for r in RATES]
        assert M.bd_rate(RATES, PSNRS, test, PSNRS, method) == pytest.approx(-10.0, abs=1e-9)

    @pytest.mark.parametrize("method", M.BD_METHODS)
    def test_psnr_raised_by_1_db_gives_plus_1_db(self, method):
        test = [p + 1 for p in PSNRS]
        assert M.bd_psnr(RATES, PSNRS, RATES, test, method) == pytest.approx(1.0, abs=1e-9)

    @pytest.mark.parametrize("method", M.BD_METHODS)
    def test_psnr_shift_on_an_exponential_curve(self, method):
        # Rate doubles every 2 dB: log10 R = log10 0.1 + (P - 28) * log10(2) / 2.
        # +1 dB at the same rates = the same quality at 2 ** -0.5 of the rate.
        psnrs = [28.0, 30.0, 32.0, 34.0, 36.0]
        rates = [0.1 * 2 ** ((p - 28) / 2) for p in psnrs]
        better = [p + 1 for p in psnrs]
        assert M.bd_rate(rates, psnrs, rates, better, method) == pytest.approx((2**-0.5 - 1) * 100, abs=1e-9)
        assert M.bd_psnr(rates, psnrs, rates, better, method) == pytest.approx(1.0, abs=1e-9)

    @pytest.mark.parametrize("method", M.BD_METHODS)
    def test_rate_gap_growing_with_quality_is_averaged(self, method):
        # log10 R_test - log10 R_anchor = 0.02 (P - 30) on [28, 36]: mean 0.02 * (32 - 30) = 0.04.
        psnrs = [28.0, 30.0, 32.0, 34.0, 36.0]
        anchor = [10 ** (-1 + 0.1 * (p - 28)) for p in psnrs]
        test = [r * 10 ** (0.02 * (p - 30)) for r, p in zip(anchor, psnrs)]
        assert M.bd_rate(anchor, psnrs, test, psnrs, method) == pytest.approx((10**0.04 - 1) * 100, abs=1e-9)

    def test_only_the_overlapping_quality_interval_counts(self):
        # The test curve covers 30..34 dB only; on that interval it is 10 % cheaper.
        test_psnr = [30.0, 31.0, 32.0, 33.0, 34.0]
        anchor_psnr = [26.0, 28.0, 30.0, 32.0, 34.0, 36.0]
        anchor = [10 ** (-1 + 0.1 * (p - 28)) for p in anchor_psnr]
        test = [0.9 * 10 ** (-1 + 0.1 * (p - 28)) for p in test_psnr]
        assert M.bd_rate(anchor, anchor_psnr, test, test_psnr) == pytest.approx(-10.0, abs=1e-9)

    def test_point_order_does_not_matter(self):
        order = [3, 0, 4, 1, 2]
        test = [0.8 * r for r in RATES]
        shuffled = M.bd_rate([RATES[i] for i in order], [PSNRS[i] for i in order],
                             [test[i] for i in order], [PSNRS[i] for i in order])
        assert shuffled == pytest.approx(M.bd_rate(RATES, PSNRS, test, PSNRS), abs=1e-12)

    def test_three_point_curves_use_a_quadratic(self):
        assert M.bd_rate(RATES[:3], PSNRS[:3], [0.5 * r for r in RATES[:3]], PSNRS[:3]) == pytest.approx(-50.0)

    def test_curves_that_do_not_overlap_give_nan(self):
        assert math.isnan(M.bd_rate(RATES, PSNRS, RATES, [p + 20 for p in PSNRS]))
        assert math.isnan(M.bd_psnr(RATES, PSNRS, [r * 100 for r in RATES], PSNRS))

    def test_pchip_matches_scipy(self):
        interpolate = pytest.importorskip("scipy.interpolate")
        rng = np.random.default_rng(3)
        for _ in range(5):
            x = np.sort(rng.uniform(25, 40, 7))
            y = np.cumsum(rng.uniform(0.05, 0.4, 7)) - 1.5
            lo, hi = x[0] + 0.7, x[-1] - 1.1
            expected = interpolate.PchipInterpolator(x, y).integrate(lo, hi) / (hi - lo)
            assert M._mean_over(x, y, lo, hi, "pchip") == pytest.approx(expected, abs=1e-12)

    def test_invalid_curves_are_rejected(self):
        with pytest.raises(ValueError, match="at least two"):
            M.bd_rate([0.1], [30.0], RATES, PSNRS)
        with pytest.raises(ValueError, match="positive"):
            M.bd_rate([0.0, 0.1], [29.0, 30.0], RATES, PSNRS)
        with pytest.raises(ValueError, match="unknown BD method"):
            M.bd_rate(RATES, PSNRS, RATES, PSNRS, method="akima")
