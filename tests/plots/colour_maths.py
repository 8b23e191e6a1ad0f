"""Colour maths for the figure tests, written independently of iwlab (WCAG luminance, Machado 2009, CIELAB)."""

import numpy as np
from matplotlib.colors import to_rgb

# Machado, Oliveira & Fernandes (2009), deuteranopia at severity 1.0, applied to linear RGB
DEUTERANOPIA = np.array(
    [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]]
)
SRGB_TO_XYZ = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
WHITE = SRGB_TO_XYZ @ np.ones(3)
# light grey (coolwarm's middle) is 0.72, Okabe-Ito yellow 0.79: both vanish on white
MAX_LUMINANCE = 0.55


def linear(c):
    c = np.asarray(to_rgb(c), dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def luminance(c):
    """WCAG relative luminance, 0 (black) to 1 (white)."""
    return float(np.array([0.2126, 0.7152, 0.0722]) @ linear(c))


def chroma(c):
    r = np.asarray(to_rgb(c))
    return float(r.max() - r.min())


def lab(lin_rgb):
    xyz = SRGB_TO_XYZ @ lin_rgb / WHITE
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def delta_e_deuteranope(a, b):
    """CIE76 colour difference of two colours as a deuteranope sees them."""
    sim = [np.clip(DEUTERANOPIA @ linear(c), 0, 1) for c in (a, b)]
    return float(np.linalg.norm(lab(sim[0]) - lab(sim[1])))
