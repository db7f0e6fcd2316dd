"""CPU kernels: a ``prange`` loop over pixels around the shared physics.

Compiled kernels are cached on disk (``cache=True``); the physics they call
comes from :func:`nbnumba.compile.cpu_functions`.
"""

from numba import njit, prange

from .. import physics as _p
from ..compile import cpu_functions

_phys = cpu_functions()
render_pixel = _phys.render_pixel
pixel_out_of_range = _phys.pixel_out_of_range

INTERP_ON = _p.INTERP_ON
INTERP_SWITCH = _p.INTERP_SWITCH
INTERP_OFF = _p.INTERP_OFF
IP_FPIXELS = _p.IP_FPIXELS
IP_SPIXELS = _p.IP_SPIXELS
IP_ROI_XMIN = _p.IP_ROI_XMIN
IP_ROI_XMAX = _p.IP_ROI_XMAX
IP_ROI_YMIN = _p.IP_ROI_YMIN
IP_ROI_YMAX = _p.IP_ROI_YMAX
IP_HAS_MASK = _p.IP_HAS_MASK


@njit(parallel=True, cache=True)
def render_image_cpu(fp, ip, sources, cells, cells_first, fhkl, mask, first_index,
                     interp_stop, scale, image, omega, out_of_range):
    """Render every pixel of the ROI into ``image`` (flat, raster order)."""
    fpixels = ip[IP_FPIXELS]
    n = fpixels * ip[IP_SPIXELS]
    for idx in prange(n):
        spixel = idx // fpixels
        fpixel = idx - spixel * fpixels
        if (fpixel < ip[IP_ROI_XMIN] or fpixel > ip[IP_ROI_XMAX]
                or spixel < ip[IP_ROI_YMIN] or spixel > ip[IP_ROI_YMAX]):
            continue
        if ip[IP_HAS_MASK] != 0 and mask[idx] == 0:
            continue
        state = INTERP_ON
        if idx == interp_stop:
            state = INTERP_SWITCH
        elif idx > interp_stop:
            state = INTERP_OFF
        value, omega_sum, oor = render_pixel(
            fpixel, spixel, fp, ip, sources, cells, cells_first, fhkl,
            idx == first_index, state, scale,
        )
        image[idx] = value
        omega[idx] = omega_sum
        out_of_range[idx] = oor


@njit(parallel=True, cache=True)
def find_out_of_range_cpu(fp, ip, sources, cells, cells_first, fhkl, mask, first_index,
                          out_of_range):
    """Flag pixels whose interpolation stencil leaves the HKL grid."""
    fpixels = ip[IP_FPIXELS]
    n = fpixels * ip[IP_SPIXELS]
    for idx in prange(n):
        spixel = idx // fpixels
        fpixel = idx - spixel * fpixels
        if (fpixel < ip[IP_ROI_XMIN] or fpixel > ip[IP_ROI_XMAX]
                or spixel < ip[IP_ROI_YMIN] or spixel > ip[IP_ROI_YMAX]):
            continue
        if ip[IP_HAS_MASK] != 0 and mask[idx] == 0:
            continue
        out_of_range[idx] = pixel_out_of_range(
            fpixel, spixel, fp, ip, sources, cells, cells_first, fhkl, idx == first_index
        )
