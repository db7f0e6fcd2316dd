"""The CPU kernels' disk cache is keyed on the physics source as well."""

from nbnumba.kernels import _cache, cpu


def test_kernel_cache_stamp_includes_the_physics_hash():
    locator = cpu.render_image_cpu._cache._impl._locator
    assert type(locator).__name__.startswith("PhysicsAware")
    stamp = locator.get_source_stamp()
    assert stamp[1] == _cache.dependency_hash()


def test_dependency_hash_follows_the_files(tmp_path, monkeypatch):
    for name in _cache.DEPENDENCIES:
        (tmp_path / name).write_text("x = 1\n")
    monkeypatch.setattr(_cache, "_PACKAGE_DIR", str(tmp_path))
    before = _cache.dependency_hash()
    (tmp_path / "physics.py").write_text("x = 2\n")
    assert _cache.dependency_hash() != before


def test_other_functions_keep_numbas_locators():
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl")
    aware = [cls for cls in impl._locator_classes if cls.__name__.startswith("PhysicsAware")]
    assert aware
    assert all(cls.from_function(test_other_functions_keep_numbas_locators, __file__) is None for cls in aware)
