__version__ = "0.1.0"

import importlib

_MODULES = ('layout', 'core', 'store', 'pixels', 'samples', 'testing', 'collect', 'cutouts', 'backgrounds', 'foregrounds', 'floor', 'composites',
            'depth', 'geometry', 'stats', 'pack', 'data', 'model', 'beam', 'cli')

def __getattr__(name):
    "Each module on first use, so that `import depthseg; depthseg.data.load(...)` works without importing them all."
    if name in _MODULES: return importlib.import_module(f'{__name__}.{name}')
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')

def __dir__(): return sorted([*globals(), *_MODULES])
