"""Build the native CPU kernels: the shared physics, compiled once and linked.

A Numba process needs about 0.2 s and 60 MB to import Numba and LLVM before
it can load even a cached kernel.  For short runs that start-up costs more
than the rendering, so the CPU backend can instead call a shared library
built from the *same* physics (:mod:`nbnumba.physics`, compiled by
:func:`nbnumba.compile.cpu_functions`), which loads with :mod:`ctypes` in a
millisecond and needs neither Numba nor LLVM at run time.

How a library is made:

1. a serial loop over a range of raster pixels (:func:`row_loop`, derived
   from the argument declaration of :mod:`nbnumba.kernels.interface`), in
   blocks of up to the physics build's ``PIXEL_LANES`` pixels of a row
   (:func:`nbnumba.physics.raster_block`), around one step per block
   (``render``, ``out_of_range`` or ``phi_loop``: the bodies of the
   ``prange`` kernels in :mod:`nbnumba.kernels.cpu`) is compiled by
   ``numba.cfunc`` with a C signature of pointers and integers;
2. its optimised LLVM module is emitted as position-independent machine code
   for this CPU (the same CPU name and features Numba's JIT uses);
3. the handful of Python and Numba runtime symbols that only the unreachable
   error paths refer to are given stub definitions that trap;
4. the object is linked into a shared library with the system C compiler
   (``cc``), written to the cache atomically.

The same route builds the Poisson noise loop of :mod:`nbnumba.rng`
(``noise``: C's random generators, sequential, bit for bit), so that a
default ``nanoBragg`` run, which writes a noise image, needs no Numba either.

Only this module imports Numba; :mod:`nbnumba.kernels.native` loads and runs
the result.  No floating-point option differs from the JIT build, so both
give the same bits (``tests/test_native_kernel.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from ..compile import rebind
from . import _numba_internals, interface

# symbols of the Python C API and of Numba's runtime: referenced only on error
# paths that cannot run here (no exceptions, no allocation), given trapping stubs
STUB_PREFIXES = ("Py", "_Py", "numba_", "NRT_")


# Filled in by _compile_cfunc with the compiled physics and numba.carray; the
# row loops below are compiled from clones that see those bindings.
carray = render_raster_block = raster_pixel_out_of_range = raster_pixel_runs_phi_loop = None
poisson_fill = RAN1_STATE_SIZE = POISSON_STATE_SIZE = None


def render(total, idx, i, n, out, fp, ip, sources, cells, cells_first, fhkl, mask, first_index, interp_stop,
           scale):
    """Render pixels ``idx .. idx+n-1`` into ``out[i ..]``; return ``total`` plus their summed solid angle."""
    return render_raster_block(total, idx, n, fp, ip, sources, cells, cells_first, fhkl, mask, first_index,
                               interp_stop, scale, out, i)


def out_of_range(total, idx, i, n, out, fp, ip, sources, cells, cells_first, fhkl, mask, first_index, interp_stop,
                 scale):
    """Flag pixels ``idx .. idx+n-1`` whose interpolation stencil leaves the HKL grid."""
    for j in range(n):
        out[i + j] = raster_pixel_out_of_range(idx + j, fp, ip, sources, cells, cells_first, fhkl, mask,
                                               first_index)
    return total


def phi_loop(total, idx, i, n, out, fp, ip, sources, cells, cells_first, fhkl, mask, first_index, interp_stop,
             scale):
    """Flag pixels ``idx .. idx+n-1`` that are rendered and where some sub-pixel/source passes ``-dmin``."""
    for j in range(n):
        out[i + j] = raster_pixel_runs_phi_loop(idx + j, fp, ip, sources, cells, cells_first, fhkl, mask)
    return total


KINDS = {"render": render, "out_of_range": out_of_range, "phi_loop": phi_loop}
pixels = None  # bound to one of KINDS by _compile_cfunc
raster_blocks = raster_block = None  # the physics build's (blocks of PIXEL_LANES pixels within a row)


def noise_loop(img_p, mask_p, n, adc_offset, state_p, pstate_p, out_p, overloads_p):
    """The exported noise function: C's Poisson loop over ``n`` pixels (see :func:`nbnumba.rng.poisson_fill`)."""
    out = carray(out_p, (n,))
    overloads = carray(overloads_p, (1,))
    total, overloads[0] = poisson_fill(carray(img_p, (n,)), carray(mask_p, (n,)), adc_offset,
                                       carray(state_p, (RAN1_STATE_SIZE,)),
                                       carray(pstate_p, (POISSON_STATE_SIZE,)), out)
    return total


def _compile_noise_cfunc():

    from numba import carray, cfunc

    from .. import rng
    from ..compile import rng_functions

    namespace = dict(globals())
    namespace.update(carray=carray, RAN1_STATE_SIZE=rng.RAN1_STATE_SIZE, POISSON_STATE_SIZE=rng.POISSON_STATE_SIZE,
                     poisson_fill=rng_functions("native").poisson_fill)
    return cfunc(interface.noise_signature(), error_model="numpy")(rebind(noise_loop, namespace))


def _compile_cfunc(kind: str, dtype: str, out_dtype: str):

    from numba import carray, cfunc, njit

    from ..compile import cpu_functions, precision_of

    phys = cpu_functions(precision_of(dtype))
    namespace = dict(globals())
    namespace.update(carray=carray, render_raster_block=phys.render_raster_block,
                     raster_pixel_out_of_range=phys.raster_pixel_out_of_range,
                     raster_pixel_runs_phi_loop=phys.raster_pixel_runs_phi_loop,
                     raster_blocks=phys.raster_blocks, raster_block=phys.raster_block)
    namespace["pixels"] = njit(rebind(KINDS[kind], namespace), inline="always", error_model="numpy")
    return cfunc(interface.cfunc_signature(dtype, out_dtype), error_model="numpy")(row_loop(namespace))


def row_loop(namespace: dict):
    """The exported function, derived from :mod:`nbnumba.kernels.interface`, with globals ``namespace``.

    It makes array views of its pointer arguments and returns the sum of
    ``pixel`` over raster pixels ``start .. start+count-1``.
    """
    code = compile(interface.row_loop_source(), f"<nbnumba row loop {interface.INTERFACE_HASH}>", "exec")
    local: dict = {}
    exec(code, namespace, local)  # noqa: S102 - source generated from the interface declaration
    return rebind(local["row_loop"], namespace)


def _stub_ir(module) -> str:
    """LLVM IR defining a trapping stub for each runtime symbol ``module`` only declares."""
    lines = ["declare void @llvm.trap()"]
    for fn in module.functions:
        if fn.is_declaration and fn.name.startswith(STUB_PREFIXES):
            ftype = str(fn.global_value_type)  # "ret (args)"
            ret, _, args = ftype.partition(" (")
            lines.append(f'define {ret} @"{fn.name}"({args} {{\n  call void @llvm.trap()\n  unreachable\n}}')
    for var in module.global_variables:
        if var.is_declaration and var.name.startswith(STUB_PREFIXES):
            lines.append(f'@"{var.name}" = global {var.global_value_type} zeroinitializer')
    return "\n".join(lines) + "\n"


def find_linker() -> str | None:
    """The C compiler used to link the shared library (``$CC``, ``cc``, ``gcc`` or ``clang``)."""
    for name in (os.environ.get("CC", "").split() or [None])[:1] + ["cc", "gcc", "clang"]:
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def build(kind: str, dtype: str, out_dtype: str, target: str) -> str:
    """Compile kernel ``kind`` and write it as the shared library ``target``.

    Returns the exported symbol name.  Raises ``RuntimeError`` when no C
    compiler is found or linking fails.
    """
    linker = find_linker()
    if linker is None:
        raise RuntimeError("no C compiler (cc, gcc or clang) on PATH to link the native kernel")
    import llvmlite.binding as llvm

    compiled = _compile_noise_cfunc() if kind == "noise" else _compile_cfunc(kind, dtype, out_dtype)
    module = llvm.parse_assembly(_numba_internals.llvm_ir(compiled))
    module.link_in(llvm.parse_assembly(_stub_ir(module)))
    module.verify()
    cpu_name, features = _numba_internals.host_target(compiled)
    machine = llvm.Target.from_triple(module.triple).create_target_machine(
        cpu=cpu_name, features=features, opt=3, reloc="pic", codemodel="default",
    )
    folder = os.path.dirname(target)
    with tempfile.TemporaryDirectory(dir=folder, prefix=f".build-{os.getpid()}-") as tmp:
        obj = os.path.join(tmp, "kernel.o")
        with open(obj, "wb") as handle:
            handle.write(machine.emit_object(module))
        out = os.path.join(tmp, "kernel.so")
        proc = subprocess.run([linker, "-shared", "-o", out, obj, "-lm"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"linking the native kernel failed: {proc.stderr.strip()[:500]}")
        os.chmod(out, 0o755)  # never group- or other-writable, whatever the umask
        os.replace(out, target)
    return compiled.native_name
