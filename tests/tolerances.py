"""Named tolerances used across the test suite (one per compared quantity).

Change one of these only with a written reason: a test that needs a looser
value than listed here has found a difference to explain, not to hide.
"""

# float image of nbnumba vs itself under a change that must not alter the physics
# (e.g. a different tiling); relative
FLOAT_IMAGE_RTOL = 1e-6

# CPU kernel vs CUDA kernel, both float64, same prepared arrays; relative.
# The two backends run the same scalar physics source; only the compiler's
# floating-point contraction may differ.
CPU_CUDA_RTOL = 1e-12
# absolute floor for pixels that are zero (or tiny) in both images, photons
CPU_CUDA_ATOL = 1e-30

# spec-mode float32 kernel vs float64 kernel; relative to the image maximum.
# The geometry and Miller indices are float64 in both builds; only the
# lattice-factor series and structure factors are float32 (the performance
# issue's accuracy target for float32 is 1e-5 of the image maximum)
FLOAT32_VS_FLOAT64_RTOL = 1e-5

# detector geometry vectors (pix0, beam centres) in metres
GEOMETRY_ATOL_M = 1e-9
# unit vectors (fdet, sdet, odet, beam ...), dimensionless
UNIT_VECTOR_ATOL = 1e-12
# angles in radians
ANGLE_ATOL_RAD = 1e-12

# independent plain-numpy reference vs the kernel, per pixel; relative
REFERENCE_RTOL = 1e-9
# absolute floor for the reference comparison (photons); pixel values are
# far above this wherever the crystal scatters
REFERENCE_ATOL = 1e-25

# the float image is stored in single precision: rounding a double to float32
# moves it by at most half an ulp, 2**-24 relative
FLOAT32_STORAGE_RTOL = 2.0 ** -24

# solid angle (steradian) relative
SOLID_ANGLE_RTOL = 1e-12

# inline sin(pi t) / cos(pi t) series of the lattice factor on |t| <= 1/2,
# absolute: double-precision build (nine/eleven terms, double arithmetic)
# and the single-precision build (shorter series evaluated in float32, whose
# rounding, about 1e-7 near 1, dominates its truncation below 1e-9)
SERIES_DOUBLE_ATOL = 1e-13
SERIES_SINGLE_ATOL = 3e-7
# |sin(n pi h) / sin(pi h)| from sincg_reduced against the direct formula,
# relative to its maximum n.  Double: rounding only.  Single: float32
# arithmetic, and the Chebyshev recurrence (n <= 8) amplifies the rounding
# of cos(pi d) (observed 1.5e-6 at n = 8)
SINCG_DOUBLE_RTOL = 1e-13
SINCG_SINGLE_RTOL = 3e-6
