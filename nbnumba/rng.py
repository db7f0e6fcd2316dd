"""Bit-exact random number generators of the C nanoBragg program.

The C program draws every random number from a Park-Miller "minimal standard"
generator with a Bays-Durham shuffle table (the ``ran1`` routine of Numerical
Recipes) and derives Poisson and Gaussian deviates from it.  The C code keeps
its generator state in ``static`` variables and does part of its arithmetic in
single precision; this module keeps the state in explicit numpy arrays and
rounds to ``float32`` at every point where C stores or computes a ``float``, so
that the numbers come out identical bit for bit.

State layouts
-------------
``ran1`` state
    int64 array of length :data:`RAN1_STATE_SIZE` (34)::

        state[0]      idum  -- the seed variable the C caller passes by pointer
        state[1]      iy    -- last output of the shuffle table (0 = never used)
        state[2:34]   iv    -- the 32-entry shuffle table

    Build one with :func:`new_ran1_state`.  A non-positive ``idum`` (or
    ``iy == 0``) makes the next draw reload the shuffle table from ``idum``.

Poisson/Gauss state
    float32 array of length :data:`POISSON_STATE_SIZE` (6)::

        pstate[0]  oldm  -- mean of the previous poidev() call (starts at -1)
        pstate[1]  g     -- cached exp(-mean) or log-probability normaliser
        pstate[2]  sq    -- cached sqrt(2 * mean)
        pstate[3]  alxm  -- cached log(mean)
        pstate[4]  gset  -- spare Gaussian deviate of gaussdev()
        pstate[5]  iset  -- 1.0 when gset holds a spare deviate, else 0.0

    Build one with :func:`new_poisson_state`.

Seeds
-----
The C program turns a command-line seed ``N`` into ``-N`` before use
(``-seed``, ``-mosaic_seed``, ``-misset_seed``; default mosaic seed
``-12345678``).  Functions here take the value *as C stores it*, i.e. callers
pass the already negated number.  A negative value (the normal case) reseeds
the generator on the first draw.

Shared shuffle table
--------------------
In C, ``iy`` and ``iv`` are shared by every seed variable, while each caller
owns its own ``idum``.  With a negative seed this sharing is invisible, because
the first draw reloads the table.  A *positive* stored seed (``-seed -5`` on
the command line) does not reload the table once any earlier stream has used
it; that stream then continues from the table left behind by the previous
one.  To reproduce that, keep a single ran1 state, and swap only ``idum``
with :func:`ran1_set_idum` when switching streams, passing the same state
array to :func:`mosaic_umats_from_state` and :func:`nbnumba.kernels.noise.poisson_image`.
"""

from __future__ import annotations

import math

import numpy as np

from nbnumba.io._roi import roi_mask  # re-exported for callers of the noise image

__all__ = [
    "DEFAULT_MOSAIC_SEED",
    "POISSON_STATE_SIZE",
    "RAN1_STATE_SIZE",
    "gammln",
    "gaussdev",
    "mosaic_rotation_umat",
    "mosaic_umats",
    "mosaic_umats_from_state",
    "new_poisson_state",
    "new_ran1_state",
    "poidev",
    "poisson_counts_fill",
    "poisson_fill",
    "poisson_image_core",
    "roi_mask",
    "ran1",
    "ran1_sequence",
    "ran1_set_idum",
    "umat2misset",
]

RAN1_STATE_SIZE = 34
"""Length of the int64 ran1 state array (idum, iy, iv[32])."""

POISSON_STATE_SIZE = 6
"""Length of the float32 poidev/gaussdev state array."""

DEFAULT_MOSAIC_SEED = -12345678
"""Mosaic seed as stored by C when ``-mosaic_seed`` is not given."""

# Park-Miller constants with Schrage factorisation and a 32-slot shuffle table.
_IA = 16807
_IM = 2147483647
_AM = 1.0 / _IM
_IQ = 127773
_IR = 2836
_NTAB = 32
_NDIV = 1 + (_IM - 1) // _NTAB
_EPS = 1.2e-7
_RNMX = 1.0 - _EPS

# Lanczos coefficients of the log-gamma approximation used by C.
_GAMMLN_COF = np.array(
    [
        76.18009172947146,
        -86.50532032941677,
        24.01409824083091,
        -1.231739572450155,
        0.1208650973866179e-2,
        -0.5395239384953e-5,
    ],
    dtype=np.float64,
)


_F32_ONE = np.float32(1.0)
_F32_MINUS_ONE = np.float32(-1.0)
_F32_THIRD = np.float32(1.0 / 3.0)


def new_ran1_state(seed: int) -> np.ndarray:
    """Create a fresh ran1 state whose ``idum`` holds `seed`.

    Parameters
    ----------
    seed : int
        Seed exactly as C stores it, i.e. already negated (``-seed 12345`` on
        the C command line is stored as ``-12345``).  Non-positive values
        reload the shuffle table on the first draw.

    Returns
    -------
    numpy.ndarray
        int64 array of length :data:`RAN1_STATE_SIZE`; see the module
        docstring for the layout.
    """
    state = np.zeros(RAN1_STATE_SIZE, dtype=np.int64)
    state[0] = int(seed)
    return state


def ran1_set_idum(state, idum):
    """Replace ``idum`` in `state`, keeping the shared shuffle table.

    Parameters
    ----------
    state : numpy.ndarray
        ran1 state (modified in place).
    idum : int
        New seed value as C stores it.

    Returns
    -------
    int
        The previous ``idum``.
    """
    old = state[0]
    state[0] = idum
    return old


def ran1(state):
    """Draw one uniform deviate in (0, 1) exactly as C's ``ran1``.

    Parameters
    ----------
    state : numpy.ndarray
        ran1 state (int64, length 34), advanced in place.

    Returns
    -------
    numpy.float32
        The single-precision value C returns (a Python ``float`` when called
        from Python).
    """
    idum = state[0]
    if idum <= 0 or state[1] == 0:
        if -idum < 1:
            idum = 1
        else:
            idum = -idum
        for j in range(_NTAB + 7, -1, -1):
            k = idum // _IQ
            idum = _IA * (idum - k * _IQ) - _IR * k
            if idum < 0:
                idum += _IM
            if j < _NTAB:
                state[2 + j] = idum
        state[1] = state[2]
    k = idum // _IQ
    idum = _IA * (idum - k * _IQ) - _IR * k
    if idum < 0:
        idum += _IM
    state[0] = idum
    j = state[1] // _NDIV
    iy = state[2 + j]
    state[1] = iy
    state[2 + j] = idum
    temp = np.float32(_AM * iy)
    if temp > _RNMX:
        return np.float32(_RNMX)
    return temp


def ran1_sequence(state, n):
    """Draw `n` consecutive ran1 values.

    Parameters
    ----------
    state : numpy.ndarray
        ran1 state, advanced in place.
    n : int
        Number of values.

    Returns
    -------
    numpy.ndarray
        float32 array of length `n`.
    """
    out = np.empty(n, dtype=np.float32)
    for i in range(n):
        out[i] = ran1(state)
    return out


def gammln(xx):
    """Natural log of the gamma function, single-precision result as in C.

    Parameters
    ----------
    xx : numpy.float32
        Argument (C passes a ``float``).

    Returns
    -------
    numpy.float32
        ``ln(Gamma(xx))`` computed in double and rounded to float.
    """
    x = np.float64(np.float32(xx))
    y = x
    tmp = x + 5.5
    tmp -= (x + 0.5) * math.log(tmp)
    ser = 1.000000000190015
    for j in range(6):
        y += 1.0
        ser += _GAMMLN_COF[j] / y
    return np.float32(-tmp + math.log(2.5066282746310005 * ser / x))


def new_poisson_state() -> np.ndarray:
    """Create the poidev/gaussdev state with C's static initial values.

    Returns
    -------
    numpy.ndarray
        float32 array of length :data:`POISSON_STATE_SIZE`:
        ``[oldm=-1, g=0, sq=0, alxm=0, gset=0, iset=0]``.
    """
    pstate = np.zeros(POISSON_STATE_SIZE, dtype=np.float32)
    pstate[0] = -1.0
    return pstate


def gaussdev(state, pstate):
    """Unit-variance normal deviate (polar Box-Muller) as C's ``gaussdev``.

    Parameters
    ----------
    state : numpy.ndarray
        ran1 state, advanced in place.
    pstate : numpy.ndarray
        poidev/gaussdev state (float32, length 6), updated in place.

    Returns
    -------
    numpy.float32
        The deviate.
    """
    if pstate[5] == 0.0:
        v1 = np.float32(0.0)
        v2 = np.float32(0.0)
        rsq = np.float32(0.0)
        while True:
            v1 = np.float32(2.0 * np.float64(ran1(state)) - 1.0)
            v2 = np.float32(2.0 * np.float64(ran1(state)) - 1.0)
            rsq = v1 * v1 + v2 * v2
            if not (rsq >= 1.0 or rsq == 0.0):
                break
        rsq64 = np.float64(rsq)
        fac = np.float32(math.sqrt(-2.0 * math.log(rsq64) / rsq64))
        pstate[4] = v1 * fac
        pstate[5] = 1.0
        return v2 * fac
    pstate[5] = 0.0
    return np.float32(pstate[4])


def poidev(xm, state, pstate):
    """Poisson deviate of mean `xm` exactly as C's ``poidev``.

    Means above 1e6 use a Gaussian approximation, means below 12 multiply
    uniform deviates, others use Lorentzian rejection sampling.

    Parameters
    ----------
    xm : numpy.float32
        Mean (C passes a ``float``).
    state : numpy.ndarray
        ran1 state, advanced in place.
    pstate : numpy.ndarray
        poidev/gaussdev state, updated in place.

    Returns
    -------
    numpy.float32
        The deviate, a whole number except in the Gaussian branch.
    """
    xm = np.float32(xm)
    if xm > 1.0e6:
        xm64 = np.float64(xm)
        return np.float32(xm64 + math.sqrt(xm64) * np.float64(gaussdev(state, pstate)))
    em = _F32_MINUS_ONE
    if xm < 12.0:
        if xm != pstate[0]:
            pstate[0] = xm
            pstate[1] = np.float32(math.exp(np.float64(-xm)))
        g = pstate[1]
        t = _F32_ONE
        while True:
            em = em + _F32_ONE
            t = t * ran1(state)
            if not (t > g):
                break
        return em
    if xm != pstate[0]:
        pstate[0] = xm
        pstate[2] = np.float32(math.sqrt(2.0 * np.float64(xm)))
        pstate[3] = np.float32(math.log(np.float64(xm)))
        pstate[1] = xm * pstate[3] - gammln(np.float32(np.float64(xm) + 1.0))
    sq = pstate[2]
    alxm = pstate[3]
    g = pstate[1]
    while True:
        y = np.float32(0.0)
        while True:
            y = np.float32(math.tan(math.pi * np.float64(ran1(state))))
            em = sq * y + xm
            if not (em < 0.0):
                break
        em = np.float32(np.floor(np.float64(em)))
        lg = em * alxm - gammln(np.float32(np.float64(em) + 1.0)) - g
        t = np.float32(0.9 * (1.0 + np.float64(y * y)) * math.exp(np.float64(lg)))
        if not (ran1(state) > t):
            break
    return em


def mosaic_rotation_umat(mosaicity, state):
    """Random rotation matrix on a spherical cap, as C's ``mosaic_rotation_umat``.

    Parameters
    ----------
    mosaicity : float
        Cap size in radians.  C declares it ``float``, so it is rounded to
        single precision first (``90.0`` gives a uniformly random rotation).
    state : numpy.ndarray
        ran1 state, advanced by three draws.

    Returns
    -------
    numpy.ndarray
        float64 array of 9 values, row-major ``[uxx, uxy, uxz, uyx, ..., uzz]``.
    """
    mos = np.float32(mosaicity)
    r1 = 2.0 * np.float64(ran1(state)) - 1.0
    r2 = 2.0 * np.float64(ran1(state)) - 1.0
    r3 = 2.0 * np.float64(ran1(state)) - 1.0
    xyrad = math.sqrt(1.0 - r2 * r2)
    # C multiplies the float parameter by powf(): single-precision power and product
    # (numpy's float32 power is powf, in Numba and in plain Python alike).
    rot = np.float64(mos * np.power(np.float32(1.0 - r3 * r3), _F32_THIRD))
    v1 = xyrad * math.sin(math.pi * r1)
    v2 = xyrad * math.cos(math.pi * r1)
    v3 = r2
    c = math.cos(rot)
    omc = 1.0 - c
    s = math.sin(rot)
    a = omc * v1
    ab = a * v2
    ac = a * v3
    bc = omc * v2 * v3
    umat = np.empty(9, dtype=np.float64)
    umat[0] = c + omc * (v1 * v1)
    umat[1] = ab - s * v3
    umat[2] = ac + s * v2
    umat[3] = ab + s * v3
    umat[4] = c + omc * (v2 * v2)
    umat[5] = bc - s * v1
    umat[6] = ac - s * v2
    umat[7] = bc + s * v1
    umat[8] = c + omc * (v3 * v3)
    return umat


def mosaic_umats_from_state(mosaic_spread_rad, n_domains, state):
    """Mosaic domain matrices drawn from an existing ran1 state.

    Parameters
    ----------
    mosaic_spread_rad : float
        Mosaic spread in radians.
    n_domains : int
        Number of domains (one matrix is drawn per domain).
    state : numpy.ndarray
        ran1 state, advanced in place.

    Returns
    -------
    numpy.ndarray
        float64 array of shape ``(n_domains, 9)``.  Domain 0 is drawn (so the
        generator advances) and then replaced by the identity, as in C.
    """
    out = np.empty((n_domains, 9), dtype=np.float64)
    for i in range(n_domains):
        u = mosaic_rotation_umat(mosaic_spread_rad, state)
        for j in range(9):
            out[i, j] = u[j]
        if i == 0:
            for j in range(9):
                out[0, j] = 0.0
            out[0, 0] = 1.0
            out[0, 4] = 1.0
            out[0, 8] = 1.0
    return out


def mosaic_umats(mosaic_spread_rad: float, n_domains: int, seed: int = DEFAULT_MOSAIC_SEED) -> np.ndarray:
    """Mosaic domain orientation matrices exactly as C builds them.

    Parameters
    ----------
    mosaic_spread_rad : float
        Mosaic spread in radians (C's ``mosaic_spread``).
    n_domains : int
        Number of mosaic domains (C always builds at least the ones asked for).
    seed : int, optional
        Mosaic seed as C stores it (negated); default ``-12345678``.

    Returns
    -------
    numpy.ndarray
        float64 array of shape ``(n_domains, 9)``, row-major matrices, with
        domain 0 the identity.
    """
    state = new_ran1_state(seed)
    return mosaic_umats_from_state(float(mosaic_spread_rad), int(n_domains), state)


def _umat2misset_core(umat):
    uxx, uxy, uxz = umat[0], umat[1], umat[2]
    uyx, uyy, uyz = umat[3], umat[4], umat[5]
    uzx, uzy, uzz = umat[6], umat[7], umat[8]

    mx = math.sqrt(uxx * uxx + uxy * uxy + uxz * uxz)
    my = math.sqrt(uyx * uyx + uyy * uyy + uyz * uyz)
    mz = math.sqrt(uzx * uzx + uzy * uzy + uzz * uzz)
    if mx > 0:
        uxx /= mx
        uxy /= mx
        uxz /= mx
    if my > 0:
        uyx /= my
        uyy /= my
        uyz /= my
    if mz > 0:
        uzx /= mz
        uzy /= mz
        uzz /= mz

    # Rows of zero length are replaced by unit rows before the repair below.
    if mx >= 0 and my <= 0 and mz <= 0:
        uyx, uyy, uyz = 0.0, 1.0, 0.0
        uzx, uzy, uzz = 0.0, 0.0, 1.0
    if mx <= 0 and my >= 0 and mz <= 0:
        uxx, uxy, uxz = 1.0, 0.0, 0.0
        uzx, uzy, uzz = 0.0, 0.0, 1.0
    if mx <= 0 and my <= 0 and mz >= 0:
        uxx, uxy, uxz = 1.0, 0.0, 0.0
        uyx, uyy, uyz = 0.0, 1.0, 0.0

    # Two rounds: build normalised cross products of row pairs, and use them
    # in place of rows that had zero length.
    for _ in range(2):
        xcy_x = uxy * uyz - uxz * uyy
        xcy_y = uxz * uyx - uxx * uyz
        xcy_z = uxx * uyy - uxy * uyx
        m = math.sqrt(xcy_x * xcy_x + xcy_y * xcy_y + xcy_z * xcy_z)
        if m > 0:
            xcy_x /= m
            xcy_y /= m
            xcy_z /= m

        ycz_x = uyy * uzz - uyz * uzy
        ycz_y = uyz * uzx - uyx * uzz
        ycz_z = uyx * uzy - uyy * uzx
        m = math.sqrt(ycz_x * ycz_x + ycz_y * ycz_y + ycz_z * ycz_z)
        if m > 0:
            ycz_x /= m
            ycz_y /= m
            ycz_z /= m

        zcx_x = uzy * uxz - uzz * uxy
        zcx_y = uzz * uxx - uzx * uxz
        zcx_z = uzx * uxy - uzy * uxx
        m = math.sqrt(zcx_x * zcx_x + zcx_y * zcx_y + zcx_z * zcx_z)
        if m > 0:
            zcx_x /= m
            zcx_y /= m
            zcx_z /= m

        if mx <= 0:
            uxx, uxy, uxz = ycz_x, ycz_y, ycz_z
        if my <= 0:
            uyx, uyy, uyz = zcx_x, zcx_y, zcx_z
        if mz <= 0:
            uzx, uzy, uzz = xcy_x, xcy_y, xcy_z

    mx = math.sqrt(uxx * uxx + uxy * uxy + uxz * uxz)
    my = math.sqrt(uyx * uyx + uyy * uyy + uyz * uyz)
    mz = math.sqrt(uzx * uzx + uzy * uzy + uzz * uzz)
    if mx > 0:
        uxx /= mx
        uxy /= mx
        uxz /= mx
    if my > 0:
        uyx /= my
        uyy /= my
        uyz /= my
    if mz > 0:
        uzx /= mz
        uzy /= mz
        uzz /= mz

    if uzx * uzx < 1.0:
        rotx = math.atan2(uzy, uzz)
        roty = math.atan2(-uzx, math.sqrt(uzy * uzy + uzz * uzz))
        rotz = math.atan2(uyx, uxx)
    else:
        rotx = math.atan2(1.0, 1.0) * 4.0
        roty = math.atan2(1.0, 1.0) * 2.0
        rotz = math.atan2(uxy, -uyy)
    return rotx, roty, rotz


def umat2misset(umat) -> tuple[float, float, float]:
    """Missetting angles of a rotation matrix, as C's ``umat2misset``.

    Parameters
    ----------
    umat : array_like
        9 values, row-major rotation matrix.

    Returns
    -------
    tuple of float
        ``(rotx, roty, rotz)`` in radians.
    """
    u = np.ascontiguousarray(np.asarray(umat, dtype=np.float64).reshape(9))
    rx, ry, rz = _umat2misset_core(u)
    return float(rx), float(ry), float(rz)


def _to_ushort(value):
    # C converts the double to unsigned short through a 32-bit signed
    # truncation on x86-64; NaN and out-of-range values become INT_MIN.
    if not (value > -2147483649.0 and value < 2147483648.0):
        return np.uint16(0)
    return np.uint16(np.int64(value) & 0xFFFF)


def poisson_image_core(float_image, mask, adc_offset, state, pstate):
    """Noise loop on a flat float32 image (raster order).

    Parameters
    ----------
    float_image : numpy.ndarray
        1-D float32 image, fast index varying fastest.
    mask : numpy.ndarray
        1-D boolean array, True for pixels inside the region of interest.
    adc_offset : float
        Offset added to each deviate.
    state : numpy.ndarray
        ran1 state, advanced in place.
    pstate : numpy.ndarray
        poidev/gaussdev state, updated in place.

    Returns
    -------
    tuple
        ``(uint16 image, photon sum, overload count)``; pixels outside the
        mask are 0.
    """
    out = np.zeros(float_image.shape[0], dtype=np.uint16)
    total, overloads = poisson_fill(float_image, mask, adc_offset, state, pstate, out)
    return out, total, overloads


def poisson_fill(float_image, mask, adc_offset, state, pstate, out):
    """The noise loop of :func:`poisson_image_core`, writing into ``out``.

    ``out`` is a uint16 array of the image's length; pixels outside
    ``mask`` (any integer or boolean array, nonzero inside) are left as they
    are.  Returns ``(photon sum, overload count)``.
    """
    total = 0.0
    overloads = 0
    for i in range(float_image.shape[0]):
        if not mask[i]:
            continue
        test = np.float64(poidev(float_image[i], state, pstate))
        total += test
        test += adc_offset
        if test > 65535.0:
            test = 65535.0
            overloads += 1
        out[i] = _to_ushort(test)
    return total, overloads


def poisson_counts_fill(float_image, mask, state, pstate, out):
    """C's noise loop as a photon-counting detector records it, writing into ``out``.

    The same deviates, from the same generator states, as
    :func:`poisson_fill`, but with no ADC offset and no 16-bit clipping:
    ``out`` (int32, the image's length) gets each deviate truncated towards
    zero, capped at 2**31 - 1.  Pixels outside ``mask`` are left as they
    are.  Returns the photon sum.
    """
    total = 0.0
    for i in range(float_image.shape[0]):
        if not mask[i]:
            continue
        test = np.float64(poidev(float_image[i], state, pstate))
        total += test
        if test > 2147483647.0:
            test = 2147483647.0
        out[i] = np.int32(test)
    return total


# ---------------------------------------------------------------------------
# Compiled builds.
#
# The functions above are plain Python; nbnumba.compile.rng_functions compiles
# them the way it compiles the physics (a clone per target, bound to the other
# clones of that target).  The module-level names below are the Numba build
# (``njit(cache=True)``, compiled on first call); the ``*_python`` functions use
# the plain-Python build: drawing a handful of setup matrices takes
# microseconds, but loading compiled code takes a large fraction of a second,
# so the command line draws its setup numbers without Numba.
COMPILED = ("ran1_set_idum", "ran1", "ran1_sequence", "gammln", "gaussdev", "poidev", "mosaic_rotation_umat",
            "mosaic_umats_from_state", "_umat2misset_core", "_to_ushort", "poisson_image_core", "poisson_fill",
            "poisson_counts_fill")
"""The functions compiled as a set by :func:`nbnumba.compile.rng_functions`."""

SOURCES = {name: globals()[name] for name in COMPILED}
"""Their plain-Python sources, whatever the module-level names are bound to."""


def _build(target: str):
    from .compile import rng_functions

    return rng_functions(target)


def _jit_entry(name: str):
    source = SOURCES[name]

    def entry(*args):
        return getattr(_build("jit"), name)(*args)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = source.__doc__
    entry.__wrapped__ = entry.py_func = source
    return entry


for _name in COMPILED:
    globals()[_name] = _jit_entry(_name)
del _name


def umat2misset_python(umat) -> tuple[float, float, float]:
    """:func:`umat2misset` without Numba."""
    r = _build("python")._umat2misset_core(np.ascontiguousarray(umat, dtype=np.float64))
    return float(r[0]), float(r[1]), float(r[2])


def mosaic_umats_python(mosaic_spread_rad: float, n_domains: int, seed: int = DEFAULT_MOSAIC_SEED) -> np.ndarray:
    """:func:`mosaic_umats` without Numba (same numbers, no compiled-code load)."""
    state = new_ran1_state(seed)
    return _build("python").mosaic_umats_from_state(float(mosaic_spread_rad), int(n_domains), state)


def mosaic_rotation_umat_python(mosaicity: float, state) -> np.ndarray:
    """:func:`mosaic_rotation_umat` without Numba."""
    return _build("python").mosaic_rotation_umat(mosaicity, state)


def ran1_python(state) -> float:
    """:func:`ran1` without Numba."""
    return _build("python").ran1(state)
