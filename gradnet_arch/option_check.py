"""Early checks of an option YAML, before BasicSR's pipeline starts working on it.

The file is read with PyYAML's safe loader only (a `!!python/...` tag is refused, naming the tag and its line, and
never run) and then checked against one description of the options below: for each key its type, range or allowed
values, for each section its keys. Components that check their own options when they are built (GradNet and
MSKResNet reject unknown keys, GaussianNoiseDataset too) keep doing so; for everything else the keys come from the
description or from the component's own signature (BasicSR's losses, metrics, optimizers, schedulers, archs).

`python -m gradnet_arch.option_check FILE...` checks files without running anything.
"""
import argparse
import ast
import collections
import contextlib
import copy
import difflib
import inspect
import json
import math
import os
import re
import yaml

from gradnet_arch.archs.predenoiser import LOAD_KEYS
from gradnet_arch.errors import MissingFileError, OptionError, UnsafeFileError
from gradnet_arch.precision import AMP_OPTIONS

# BasicSR datasets that read opt['scale'] (BasicSR's parse_options copies the top-level key into each dataset).
SCALED_DATASETS = ('PairedImageDataset', 'RealESRGANPairedDataset')
REQUIRED = ('name', 'model_type', 'num_gpu', 'datasets', 'network_g', 'path')
# Optimizers BasicSR's BaseModel.get_optimizer builds, and its schedulers (BaseModel.setup_schedulers).
OPTIMIZERS = ('Adam', 'AdamW', 'Adamax', 'SGD', 'ASGD', 'RMSprop', 'Rprop')
SCHEDULERS = {
    'MultiStepLR': 'MultiStepRestartLR',
    'MultiStepRestartLR': 'MultiStepRestartLR',
    'CosineAnnealingRestartLR': 'CosineAnnealingRestartLR'
}
MAX_FILE_BYTES = 16 << 20  # option files are a few kB; anything this large is not one
MAX_VALUES = 1_000_000  # after YAML aliases are expanded (a "billion laughs" file stays small on disk)
_HINT_CUTOFF = 0.75
_PYYAML_TAG = 'tag:yaml.org,2002:'

# ---------------------------------------------------------------------------------------------------------------------
# Reading option files safely.


class _OptionLoader(yaml.SafeLoader):
    """PyYAML's safe loader (plain values only), mappings as OrderedDict like BasicSR's loader, duplicates refused."""


def _construct_mapping(loader, node):
    seen = set()
    for key_node, _ in node.value:  # before merging: a key may override one merged in from `<<: *anchor`
        if key_node.tag == 'tag:yaml.org,2002:merge':
            continue
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, collections.abc.Hashable):
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f'duplicate key {key!r} (the later value would '
                    f'win silently)', key_node.start_mark)
            seen.add(key)
    loader.flatten_mapping(node)  # merge keys, as the YAML spec says
    return collections.OrderedDict(loader.construct_pairs(node))


_OptionLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _yaml_error(name, error):
    """An OptionError (or UnsafeFileError for Python tags) for a YAML error, naming the tag or problem and line."""
    mark = getattr(error, 'problem_mark', None) or getattr(error, 'context_mark', None)
    where = f'{name}, line {mark.line + 1}' if mark is not None else name
    problem = getattr(error, 'problem', None) or str(error)
    tag = re.search(r"constructor for the tag '([^']*)'", problem)
    if tag:
        tag = tag.group(1).replace(_PYYAML_TAG, '!!')
        if tag.startswith('!!python/'):
            return UnsafeFileError(f'{where}: the tag {tag} makes BasicSR\'s own YAML loader build Python objects, '
                                   f'which can run code; the file is refused and nothing in it was run. Option files '
                                   f'hold plain values only (strings, numbers, booleans, lists, mappings).')
        return OptionError(f'{where}: unknown YAML tag {tag}; option files hold plain values only (strings, numbers, '
                           f'booleans, lists, mappings; `!!float 1e-3` is fine).')
    return OptionError(f'{where}: not valid YAML: {problem}.')


def _check_size(name, opt):
    """Refuse documents whose aliases expand to more values than any option file holds."""
    count, stack = 0, [opt]
    while stack:
        value = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise OptionError(f'{name}: the file expands to more than {MAX_VALUES:,d} values through YAML aliases '
                              f'(&anchor / *alias); that is not an option file.')
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)


def load_options(text, name='<options>'):
    """Parse option YAML `text` with the safe loader (what BasicSR's yaml_load returns, without running code).

    Args:
        text (str): The YAML document.
        name (str): The file name, for messages.

    Returns:
        OrderedDict | Any: The options.

    Raises:
        UnsafeFileError: The text has a `!!python/...` tag (naming the tag and line); nothing is run.
        OptionError: Not valid YAML, another unknown tag, or a duplicate key.
    """
    try:
        opt = yaml.load(text, Loader=_OptionLoader)
    except yaml.YAMLError as error:
        raise _yaml_error(name, error) from None
    except RecursionError:
        raise OptionError(f'{name}: the YAML is nested too deeply to be an option file.') from None
    _check_size(name, opt)
    return opt


def read_option_file(path):
    """Read an option file safely; see `load_options`.

    Raises:
        MissingFileError: No such file.
        OptionError: Not a regular file, unreadable, not UTF-8 text, too large, or not valid YAML.
        UnsafeFileError: A `!!python/...` tag.
    """
    if not os.path.exists(path):
        raise MissingFileError(f'option file not found: {path}')
    if not os.path.isfile(path):
        raise OptionError(f'option file {path} is not a regular file (-opt takes a YAML file).')
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise OptionError(f'{path} is {size / 2**20:.0f} MiB; an option file is a small YAML text file.')
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except UnicodeDecodeError as error:
        raise OptionError(f'{path} is not UTF-8 text ({error.reason} at byte {error.start}); -opt takes a YAML '
                          f'file.') from None
    except OSError as error:
        raise OptionError(f'cannot read option file {path}: {error.strerror or error}.') from None
    return load_options(text, path)


def plain_options(opt):
    """`opt` as read (ordered mappings) turned into plain dicts and lists, which PyYAML's safe dumper writes."""
    return json.loads(json.dumps(opt))


def safe_yaml_load(f):
    """Drop-in for BasicSR's `yaml_load` (a file name or a YAML string) that only ever uses the safe loader."""
    if os.path.isfile(f):
        return read_option_file(f)
    return load_options(f)


@contextlib.contextmanager
def safe_option_loading(already_read=None):
    """Within the block, BasicSR's `yaml_load` (which uses PyYAML's full, code-running loader) reads safely.

    Args:
        already_read (dict | None): {path: options} already read and checked; BasicSR gets a copy of exactly those
            instead of reading the file again.
    """
    import basicsr.utils
    import basicsr.utils.options

    known = {os.path.abspath(p): opt for p, opt in (already_read or {}).items()}

    def yaml_load(f):
        if isinstance(f, str) and os.path.abspath(f) in known:
            return copy.deepcopy(known[os.path.abspath(f)])
        return safe_yaml_load(f)

    saved = [(module, module.yaml_load) for module in (basicsr.utils.options, basicsr.utils)]
    for module, _ in saved:
        module.yaml_load = yaml_load
    try:
        yield known
    finally:
        for module, original in saved:
            module.yaml_load = original


# ---------------------------------------------------------------------------------------------------------------------
# The description language: each spec checks one value and says what it allows.


def _yaml_text(value):
    """A value as it would be written in YAML (for messages)."""
    if value is None:
        return '~'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return repr(value) if isinstance(value, str) else str(value)


def _suggest(key, choices):
    match = difflib.get_close_matches(str(key), [str(c) for c in choices], n=1, cutoff=_HINT_CUTOFF)
    return match[0] if match else None


def _join(where, key):
    return f'{where}.{key}' if where else str(key)


class _Context:
    """What a check needs besides the value: the file name for messages and the pipeline (train or test)."""

    def __init__(self, name, is_train):
        self.name, self.is_train = name, is_train

    def fail(self, where, value, allowed):
        raise OptionError(f'{self.name}: {where} is {_yaml_text(value)}; {allowed}.')


class Spec:
    """One value's description. `text` says what is allowed ("an integer >= 1")."""
    text = 'any value'

    def check(self, value, where, ctx):
        pass

    def allowed(self):
        return f'it must be {self.text}'


ANY = Spec()


class Int(Spec):

    def __init__(self, min=None, max=None, integral_float=False):
        self.min, self.max, self.integral_float = min, max, integral_float
        self.text = 'an integer' + _bounds(min, max)

    def check(self, value, where, ctx):
        ok = isinstance(value, int) and not isinstance(value, bool)
        if self.integral_float and isinstance(value, float) and math.isfinite(value) and value.is_integer():
            ok, value = True, int(value)
        if not ok or (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            ctx.fail(where, value, self.allowed())


class Number(Spec):

    def __init__(self, min=None, max=None, min_open=False, max_open=False):
        self.min, self.max, self.min_open, self.max_open = min, max, min_open, max_open
        self.text = 'a number' + _bounds(min, max, min_open, max_open)

    def check(self, value, where, ctx):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and self.min is not None:
            ok = value > self.min if self.min_open else value >= self.min
        if ok and self.max is not None:
            ok = value < self.max if self.max_open else value <= self.max
        if not ok:
            ctx.fail(where, value, self.allowed())


def _bounds(low, high, low_open=False, high_open=False):
    if low is not None and high is not None:
        return f' in {"(" if low_open else "["}{low}, {high}{")" if high_open else "]"}'
    if low is not None:
        return f' {">" if low_open else ">="} {low}'
    if high is not None:
        return f' {"<" if high_open else "<="} {high}'
    return ''


class Bool(Spec):
    text = 'true or false'

    def check(self, value, where, ctx):
        if not isinstance(value, bool):
            ctx.fail(where, value, self.allowed())


class Str(Spec):

    def __init__(self, empty=False):
        self.empty = empty
        self.text = 'a string' if empty else 'a non-empty string'

    def check(self, value, where, ctx):
        if not isinstance(value, str) or not (value or self.empty):
            ctx.fail(where, value, self.allowed())


class Choice(Spec):
    """One of fixed values; compared by type too (YAML `0` is not `false`)."""

    def __init__(self, *choices):
        self.choices = choices
        self.text = ('one of ' if len(choices) > 1 else '') + ', '.join(_yaml_text(c) for c in choices)

    def check(self, value, where, ctx):
        if not any(type(value) is type(c) and value == c for c in self.choices):
            hint = _suggest(value, [c for c in self.choices if isinstance(c, str)]) if isinstance(value, str) else None
            ctx.fail(where, value, self.allowed() + (f' (did you mean {hint!r}?)' if hint else ''))


class Either(Spec):

    def __init__(self, *specs):
        self.specs = specs
        self.text = ' or '.join(s.text for s in specs)

    def check(self, value, where, ctx):
        for spec in self.specs:
            try:
                spec.check(value, where, ctx)
                return
            except OptionError:
                continue
        ctx.fail(where, value, self.allowed())


class Optional(Spec):
    """`spec` or `~` (None, which BasicSR and the components read as "not set")."""

    def __init__(self, spec):
        self.spec = spec
        self.text = f'{spec.text} or ~'

    def check(self, value, where, ctx):
        if value is not None:
            self.spec.check(value, where, ctx)


class ListOf(Spec):

    def __init__(self, item, length=None, min_len=0, ascending=False):
        self.item, self.length, self.min_len, self.ascending = item, length, min_len, ascending
        size = f'{length} ' if length else ('a non-empty ' if min_len else '')
        self.text = f'a list of {size}values, each {item.text}'.replace('a list of a non-empty', 'a non-empty list of')

    def check(self, value, where, ctx):
        if not isinstance(value, list) or (self.length is not None and len(value) != self.length) \
                or len(value) < self.min_len:
            ctx.fail(where, value, self.allowed())
        for i, item in enumerate(value):
            self.item.check(item, f'{where}[{i}]', ctx)
        if self.ascending and any(b < a for a, b in zip(value, value[1:])):
            ctx.fail(where, value, 'the values must be in ascending order')


class Range(ListOf):
    """[low, high] with low <= high."""

    def __init__(self, item):
        super().__init__(item, length=2)
        self.text = f'[low, high] with low <= high, each {item.text}'

    def check(self, value, where, ctx):
        super().check(value, where, ctx)
        if value[0] > value[1]:
            ctx.fail(where, value, self.allowed())


class Mapping(Spec):
    """A mapping with described keys.

    Args:
        fields (dict): key -> Spec.
        required (tuple): Keys that must be there (both pipelines); `train_required` / `test_required` only in one.
        strict (bool): Unknown keys are errors (with a close match if there is one and the valid keys).
        patterns (dict): regular expression -> Spec, for families of keys (`pretrain_network_<net>`).
        hidden (tuple): Keys accepted without being listed as valid (set by BasicSR after reading the file).
    """

    def __init__(self, fields, required=(), train_required=(), test_required=(), strict=True, patterns=None, hidden=()):
        self.fields, self.required, self.strict = fields, required, strict
        self.train_required, self.test_required = train_required, test_required
        self.patterns, self.hidden = patterns or {}, hidden
        self.text = 'a mapping of options'

    def field(self, key):
        if key in self.fields:
            return self.fields[key]
        return next((spec for pattern, spec in self.patterns.items() if re.fullmatch(pattern, str(key))), None)

    def valid_keys(self):
        return [k for k in self.fields if k not in self.hidden] + \
            [p.replace(r'\w+', '<net>').replace('\\', '') for p in self.patterns]

    def check(self, value, where, ctx):
        if not isinstance(value, dict):
            ctx.fail(where, value, f'it must be {self.text}')
        for key in value:
            spec = self.field(key)
            if spec is None and self.strict:
                _unknown_key(ctx, where, key, self.valid_keys())
        _missing(ctx, where, value, self.required, self.train_required if ctx.is_train else self.test_required,
                 ctx.is_train)
        for key, item in value.items():
            spec = self.field(key)
            if spec is not None:
                spec.check(item, _join(where, key), ctx)


def _missing(ctx, where, value, required, phase_required, is_train):
    """Raise for required keys that are not in `value`; `phase_required` ones are needed for training/testing."""
    missing = [k for k in list(required) + list(phase_required) if k not in value]
    if missing:
        needed = any(k in phase_required for k in missing)
        why = f' ({"training" if is_train else "testing"} needs it)' if needed else ''
        raise OptionError(f'{ctx.name}: {where or "the file"} is missing {", ".join(dict.fromkeys(missing))}{why}.')


def _unknown_key(ctx, where, key, valid):
    hint = _suggest(key, valid)
    text = f'unknown key {key!r} in {where}' if where else f'unknown top-level key {key!r}'
    if hint:
        raise OptionError(f'{ctx.name}: {text}; did you mean {hint!r}?')
    raise OptionError(f'{ctx.name}: {text}; valid keys: {", ".join(valid)}.')


class MapOf(Spec):
    """A mapping from free names (metrics, ...) to values of one spec."""

    def __init__(self, item):
        self.item = item
        self.text = 'a mapping of names to option mappings'

    def check(self, value, where, ctx):
        if not isinstance(value, dict):
            ctx.fail(where, value, self.allowed())
        for key, item in value.items():
            self.item.check(item, _join(where, key), ctx)


class Component(Spec):
    """A mapping with a `type` naming a class or function, and that component's options.

    Keys: the described `fields` (common ones and per type), plus the component's own parameters when it is a
    callable without `**kwargs` (then anything else is an error, and parameters without default are required).
    Components taking `**kwargs` (GradNet, MSKResNet) check their own keys when built, so those are left to them;
    so are datasets, whose constructor takes one `opt` dict, unless their type is in `complete_types`.

    Args:
        kind (str): What it is, for messages ("arch", "loss", "optimizer").
        registry (str | None): Name of the BasicSR registry the type is looked up in (ARCH_REGISTRY, ...).
        types (dict | None): Otherwise type name -> callable (or a function returning that dict).
        fields (dict): Options every type takes: key -> Spec.
        per_type (dict): type -> {key: Spec} of that type's own options.
        skip_params (tuple): Parameters of the callable that are not options (self, params, img, ...).
        extra_keys (tuple): Keys BasicSR consumes itself besides the callable's parameters (`better` of metrics).
        signature (bool): Take keys from the callable's signature.
        strict_kwargs (bool): Treat `**kwargs` as taking nothing (BasicSR's metrics swallow unknown keys silently).
        complete_types (tuple): Types whose described keys are all there is (unknown keys are errors).
        train_required (dict): type -> keys required in training (datasets: in the train phase).
        required (tuple): Keys every type needs besides the callable's own required parameters.
        never_required (tuple): Parameters that are filled in by the caller when missing (not required).
    """

    def __init__(self,
                 kind,
                 registry=None,
                 types=None,
                 fields=None,
                 per_type=None,
                 skip_params=('self', ),
                 extra_keys=(),
                 signature=True,
                 strict_kwargs=False,
                 complete_types=(),
                 train_required=None,
                 required=(),
                 never_required=()):
        self.kind, self.registry, self.types = kind, registry, types
        self.required, self.never_required = required, never_required
        self.fields, self.per_type = fields or {}, per_type or {}
        self.skip_params, self.extra_keys = skip_params, extra_keys
        self.signature, self.strict_kwargs, self.complete_types = signature, strict_kwargs, complete_types
        self.train_required = train_required or {}
        self.text = f'a mapping with a `type` ({kind}) and its options'

    def _registry(self):
        from basicsr.utils import registry as registries
        return getattr(registries, self.registry)

    def choices(self):
        if self.registry:
            return sorted(name for name, _ in self._registry())
        return list(self.types() if callable(self.types) else self.types)

    def lookup(self, name):
        if self.registry:
            registry = self._registry()
            return registry.get(name) if name in registry else None
        types = self.types() if callable(self.types) else self.types
        return types.get(name)

    def check(self, value, where, ctx, train_phase=None):
        if not isinstance(value, dict):
            ctx.fail(where, value, f'it must be {self.text}')
        if 'type' not in value:
            raise OptionError(f'{ctx.name}: {where} needs a `type` (the {self.kind}, e.g. {self.choices()[0]}).')
        name = value['type']
        target = self.lookup(name) if isinstance(name, str) else None
        if target is None:
            if self.registry:
                _check_registered(ctx.name, f'{where}.type', name, self._registry())
            hint = _suggest(name, self.choices()) if isinstance(name, str) else None
            raise OptionError(f'{ctx.name}: {where}.type is {_yaml_text(name)}, not one of the {self.kind}s BasicSR '
                              f'builds ({", ".join(self.choices())})' + (f'; did you mean {hint!r}?' if hint else '.'))
        named, takes_kwargs = self._parameters(target)
        # The described options, then what each remaining parameter's default says (a bool default takes true or
        # false, a number default a number, a string default a string): a wrong type never reaches the constructor.
        fields = {p.name: _spec_of_default(p.default) for p in named}
        fields.update(self.fields)
        fields.update(self.per_type.get(name, {}))
        if self.signature and not takes_kwargs:
            params = [p.name for p in named]
            valid = ['type'] + params + [k for k in self.extra_keys if k not in params]
        elif name in self.complete_types:
            valid = ['type'] + [k for k in fields if k != 'type']
        else:
            valid = None  # the component checks its own keys
        if valid is not None:
            for key in value:
                if key not in valid:
                    _unknown_key(ctx, where, key, valid)
        in_training = ctx.is_train if train_phase is None else train_phase
        required = [p.name for p in named if p.default is p.empty and p.name not in self.never_required]
        _missing(ctx, f'{where} ({name})', value, required + list(self.required),
                 self.train_required.get(name, ()) if in_training else (), True)
        for key, item in value.items():
            spec = fields.get(key)
            if spec is not None:
                spec.check(item, _join(where, key), ctx)

    def _parameters(self, target):
        """The callable's option parameters, and whether it also takes **kwargs (which it then checks itself)."""
        if not self.signature:
            return [], True
        try:
            params = list(inspect.signature(target).parameters.values())
        except (TypeError, ValueError):
            return [], True
        takes_kwargs = not self.strict_kwargs and any(p.kind is p.VAR_KEYWORD for p in params)
        named = [
            p for p in params if p.name not in self.skip_params and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]
        return named, takes_kwargs


def _spec_of_default(default):
    """What a parameter's default value says about its type (None when it says nothing; ~ is left to the callable)."""
    if isinstance(default, bool):
        return Optional(Bool())
    if isinstance(default, (int, float)):
        return Optional(Number())  # an integer default often takes floats too (weight_decay=0)
    if isinstance(default, str):
        return Optional(Str(empty=not default))
    return None


class Registered(Spec):
    """A name registered in one of BasicSR's registries (model_type)."""

    def __init__(self, registry):
        self.registry = registry
        self.text = 'a registered name'

    def check(self, value, where, ctx):
        from basicsr.utils import registry as registries
        _check_registered(ctx.name, where, value, getattr(registries, self.registry))


def _check_registered(path, where, name, registry):
    if not isinstance(name, str) or name not in registry:
        names = [n for n, _ in registry]
        hint = _suggest(name, names) if isinstance(name, str) else None
        raise OptionError(f'{path}: {where} {name!r} is not registered in BasicSR\'s {registry._name} registry' +
                          (f'; did you mean {hint!r}?' if hint else '.'))


# ---------------------------------------------------------------------------------------------------------------------
# The options: one description of every section and component.


def _optimizers():
    import torch
    return {name: getattr(torch.optim, name) for name in OPTIMIZERS}


def _schedulers():
    from basicsr.models import lr_scheduler
    return {name: getattr(lr_scheduler, cls) for name, cls in SCHEDULERS.items()}


_COUNT = Int(min=1)
_MSK_FIELDS = {
    'num_in_ch': Int(min=1),
    'num_out_ch': Optional(Int(min=1)),
    'num_feat': _COUNT,
    'num_modules': _COUNT,
    'num_units': _COUNT,
    'batch_norm': Bool(),
    'reduction': _COUNT,
    'global_residual': Bool(),
}
# GradNet and MSKResNet check their own keys and their choices (num_in_ch 1/3, gradient_source, fusion) when built;
# described here are the types that would otherwise end in a traceback deep inside torch.
_LOAD_FIELDS = {'pretrained': Optional(Str()), 'param_key': Optional(Str()), 'strict': Bool()}
assert set(_LOAD_FIELDS) == set(LOAD_KEYS), 'describe every load key of the pre-denoiser'
PREDENOISER = Component(
    'arch',
    registry='ARCH_REGISTRY',
    fields=_LOAD_FIELDS,
    per_type={'MSKResNet': _MSK_FIELDS},
    extra_keys=LOAD_KEYS,
    never_required=('num_in_ch', ))  # build_predenoiser fills in GradNet's
_GRADNET_FIELDS = dict({k: v for k, v in _MSK_FIELDS.items() if k != 'num_out_ch'}, predenoiser=Optional(PREDENOISER))
ARCH = Component('arch', registry='ARCH_REGISTRY', per_type={'MSKResNet': _MSK_FIELDS, 'GradNet': _GRADNET_FIELDS})

LOSS = Component(
    'loss', registry='LOSS_REGISTRY', fields={
        'loss_weight': Number(),
        'reduction': Choice('none', 'mean', 'sum')
    })
METRIC = Component(
    'metric',
    registry='METRIC_REGISTRY',
    fields={
        'crop_border': Int(min=0),
        'test_y_channel': Bool(),
        'input_order': Choice('HWC', 'CHW'),
        'better': Choice('higher', 'lower')
    },
    skip_params=('img', 'img2'),
    extra_keys=('better', ),  # read by BasicSR's model (best-metric tracking), not by the metric
    strict_kwargs=True)  # BasicSR's metrics take **kwargs and drop them: a misspelt key would vanish silently
OPTIMIZER = Component(
    'optimizer',
    types=_optimizers,
    fields={
        'lr': Number(min=0, min_open=True),
        'betas': ListOf(Number(min=0, max=1, max_open=True), length=2),
        'eps': Number(min=0, min_open=True),
        'weight_decay': Number(min=0),
        'momentum': Number(min=0),
        'amsgrad': Bool(),
        'nesterov': Bool(),
    },
    skip_params=('self', 'params'),
    required=('lr', ))  # BasicSR's get_optimizer takes lr as a required argument
SCHEDULER = Component(
    'scheduler',
    types=_schedulers,
    fields={
        'milestones': ListOf(Int(min=1)),
        'gamma': Number(min=0, min_open=True),
        'restarts': ListOf(Int(min=0)),
        'restart_weights': ListOf(Number(min=0)),
        'periods': ListOf(Int(min=1), min_len=1),
        'eta_min': Number(min=0),
        'last_epoch': Int(min=-1),
    },
    skip_params=('self', 'optimizer'))

_SIGMA = Number(min=0)
_FOLDER = Str()
DATASET = Component(
    'dataset',
    registry='DATASET_REGISTRY',
    signature=False,  # datasets take one `opt` dict
    fields={
        # BasicSR's parse_options, build_dataloader and prefetchers
        'name': Str(),
        'phase': Str(),
        'scale': Int(min=1),
        'io_backend': Mapping({'type': Choice('disk', 'lmdb', 'memcached')}, required=('type', ), strict=False),
        'batch_size_per_gpu': Int(min=1),
        'num_worker_per_gpu': Int(min=0),
        'dataset_enlarge_ratio': Number(min=0, min_open=True),
        'prefetch_mode': Choice(None, 'cpu', 'cuda'),
        'pin_memory': Bool(),
        'persistent_workers': Bool(),
        'num_prefetch_queue': Int(min=1),
        # the usual data options of BasicSR's datasets
        'dataroot_gt': Either(_FOLDER, ListOf(_FOLDER, min_len=1)),
        'dataroot_lq': _FOLDER,
        'meta_info_file': Optional(Str()),
        'filename_tmpl': Str(),
        'gt_size': Int(min=1),
        'use_hflip': Bool(),
        'use_rot': Bool(),
        'mean': ListOf(Number()),
        'std': ListOf(Number(min=0, min_open=True)),
    },
    per_type={
        'GaussianNoiseDataset': {
            'dataroot_gt': Either(_FOLDER, ListOf(_FOLDER, min_len=1)),
            'color': Choice('rgb', 'gray'),
            'sigma': Optional(_SIGMA),  # exactly one of the three is set (the dataset checks that)
            'sigma_range': Optional(Range(_SIGMA)),
            'sigma_list': Optional(ListOf(_SIGMA, min_len=1)),
            'clip': Bool(),
            'noise_seed': Int(min=0, max=2**32 - 1),
            'recursive': Bool(),
            'cache_images': Bool(),
        },
        'PairedImageDataset': {
            'dataroot_gt': _FOLDER,
            'color': Optional(Choice('y'))
        },
        'SingleImageDataset': {
            'color': Optional(Choice('y'))
        },
    },
    # BasicSR's datasets do not check their keys: these lists are complete (GaussianNoiseDataset checks its own)
    complete_types=('PairedImageDataset', 'SingleImageDataset'),
    required=('name', ),
    train_required={
        'GaussianNoiseDataset': ('batch_size_per_gpu', 'num_worker_per_gpu', 'gt_size'),
        'PairedImageDataset': ('batch_size_per_gpu', 'num_worker_per_gpu', 'gt_size', 'use_hflip', 'use_rot'),
    })
# Keys a dataset of any type needs in the training phase (BasicSR's build_dataloader reads them).
_TRAIN_LOADER_KEYS = ('batch_size_per_gpu', 'num_worker_per_gpu')


class Datasets(Spec):
    """`datasets`: phase name -> dataset. Training takes `train` and `val`/`val_*`; testing `test*` / `val*`."""
    text = 'a mapping of phases (train, val, test_1, ...) to dataset options'

    def check(self, value, where, ctx):
        if not isinstance(value, dict) or not value:
            raise OptionError(f'{ctx.name}: datasets must map phases (train, val, test_1, ...) to dataset options.')
        for phase, dataset in value.items():
            prefix = str(phase).split('_')[0]
            if ctx.is_train and phase != 'train' and prefix != 'val':
                raise OptionError(f'{ctx.name}: datasets.{phase}: a training file has the phases train and val '
                                  f'(or val_1, val_2, ...), not {phase!r}.')
            if not ctx.is_train and prefix not in ('test', 'val'):
                raise OptionError(f'{ctx.name}: datasets.{phase}: a test file has the phases test_1, test_2, ... '
                                  f'(or val...), not {phase!r}.')
            if not isinstance(dataset, dict) or 'type' not in dataset:
                raise OptionError(f'{ctx.name}: datasets.{phase} needs a `type` (e.g. GaussianNoiseDataset).')
            train_phase = phase == 'train'
            DATASET.check(dataset, f'datasets.{phase}', ctx, train_phase=train_phase)
            if train_phase:
                _missing(ctx, 'datasets.train', dataset, (), _TRAIN_LOADER_KEYS, True)
        if ctx.is_train and 'train' not in value:
            raise OptionError(f'{ctx.name}: datasets has no `train` phase (training needs one).')


_NETWORK_FILE = Optional(Str())
PATH = Mapping(
    {
        'resume_state': Optional(Str()),
        'experiments_root': Str(),
        'results_root': Str(),
        'ignore_resume_networks': Optional(ListOf(Str())),
        # set by BasicSR's parse_options
        'models': Str(),
        'training_states': Str(),
        'log': Str(),
        'visualization': Str(),
    },
    patterns={
        r'pretrain_network_\w+': _NETWORK_FILE,
        r'param_key_\w+': Optional(Str()),
        r'strict_load_\w+': Bool()
    },
    hidden=('models', 'training_states', 'log', 'visualization'))
TRAIN = Mapping(
    {
        'total_iter': Int(min=1, integral_float=True),  # BasicSR reads int(total_iter): 4e5 is fine
        'warmup_iter': Int(min=-1),
        'ema_decay': Number(min=0, max=1, max_open=True),
        'optim_g': OPTIMIZER,
        'scheduler': SCHEDULER,
        'pixel_opt': Optional(LOSS),
        'gradient_opt': Optional(LOSS),
        'perceptual_opt': Optional(LOSS),
    },
    train_required=('total_iter', 'optim_g', 'scheduler'),
    strict=False)  # the model checks the keys of `train` (GradNetModel: TRAIN_KEYS, with close matches)
_FREQUENCY = Number(min=0, min_open=True)
VAL = Mapping(
    {
        'val_freq': _FREQUENCY,
        'save_img': Bool(),
        'suffix': Optional(Str()),
        'pbar': Bool(),
        'metrics': Optional(MapOf(METRIC)),
    },
    required=('save_img', ),
    train_required=('val_freq', ))
LOGGER = Mapping(
    {
        'print_freq': _FREQUENCY,
        'save_checkpoint_freq': _FREQUENCY,
        'use_tb_logger': Bool(),
        'wandb': Optional(Mapping({
            'project': Optional(Str()),
            'resume_id': Optional(Str())
        })),
    },
    train_required=('print_freq', 'save_checkpoint_freq', 'use_tb_logger'))
TOP_LEVEL = Mapping(
    {
        'name': Str(),
        'model_type': Registered('MODEL_REGISTRY'),
        'scale': Int(min=1),
        'num_gpu': Either(Int(min=0), Choice('auto')),
        'manual_seed': Optional(Int(min=0, max=2**32 - 1)),
        'datasets': Datasets(),
        'network_g': ARCH,
        'network_d': ARCH,
        'path': PATH,
        'train': Optional(TRAIN),
        'val': Optional(VAL),
        'logger': LOGGER,
        'dist_params': Mapping({
            'backend': Choice('nccl', 'gloo', 'mpi'),
            'port': Int(min=1, max=65535)
        }),
        'find_unused_parameters': Bool(),
        'amp': Choice(*AMP_OPTIONS),  # mixed precision of GradNetModel; ~ or absent: float32
        'channels_last': Optional(Bool()),
        'compile': Optional(Bool()),  # torch.compile of GradNetModel's training step
        # set by BasicSR's parse_options and the plugin after reading the file (a parsed dict can be checked too)
        'is_train': ANY,
        'dist': ANY,
        'rank': ANY,
        'world_size': ANY,
        'auto_resume': ANY,
        'root_path': ANY,
    },
    required=REQUIRED,
    train_required=('train', 'logger'),
    test_required=('val', ),
    hidden=('is_train', 'dist', 'rank', 'world_size', 'auto_resume', 'root_path'))


def check_options(opt, path='<options>', is_train=None):
    """Check an option dict (as read from YAML) against the description above.

    Args:
        opt (dict): The options.
        path (str): The file name, for messages.
        is_train (bool | None): For gradnet-train (True) or gradnet-test (False); None: training when the file has
            a `train` section.

    Raises:
        OptionError: One line naming the file, the key, its value and what is allowed.
    """
    if not isinstance(opt, dict):
        raise OptionError(f'{path} does not hold a YAML mapping of options.')
    ctx = _Context(path, bool(opt.get('train')) if is_train is None else is_train)
    TOP_LEVEL.check(opt, '', ctx)
    for phase, dataset in opt['datasets'].items():
        if dataset['type'] in SCALED_DATASETS and 'scale' not in opt:
            raise OptionError(f'{path}: datasets.{phase} ({dataset["type"]}) reads the top-level `scale`; add '
                              f'`scale: 1` for denoising.')


# ---------------------------------------------------------------------------------------------------------------------
# The command line of gradnet-train / gradnet-test.

_FORCE_KEY = re.compile(r'[A-Za-z0-9_.\-]+(:[A-Za-z0-9_.\-]+)*')


def _command_line(argv):
    """BasicSR's parse_options flags (so abbreviations resolve as there), without failing on anything else."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('-opt')
    parser.add_argument('--launcher')
    parser.add_argument('--auto_resume', action='store_true')
    parser.add_argument('--debug', action='store_true')
    parser.add_argument('--local_rank')
    parser.add_argument('--force_yml', nargs='+', default=None)
    args, _ = parser.parse_known_args(argv)
    return args


def _force_value(entry, value):
    """A --force_yml value as BasicSR's _postprocess_yml_value reads it, with literal_eval where BasicSR uses eval."""
    from basicsr.utils.options import _postprocess_yml_value

    if value.startswith('['):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise OptionError(f'--force_yml {entry}: a value starting with [ must be a literal list, e.g. '
                              f'[100, 200].') from None
    try:
        return _postprocess_yml_value(value)
    except ValueError as error:
        raise OptionError(f'--force_yml {entry}: cannot read the value ({error}).') from None


def apply_force_yml(opt, entries):
    """Apply BasicSR's `--force_yml a:b=value` overrides to `opt`, refusing entries BasicSR would run as code.

    BasicSR builds a Python statement from each entry and runs it with exec (and values starting with `[` with
    eval); only plain key paths and literal values are let through, so what BasicSR runs is an assignment.
    """
    for entry in entries:
        if entry.count('=') != 1:
            raise OptionError(f'--force_yml {entry}: write KEY:SUBKEY=VALUE (one "=", e.g. train:ema_decay=0.999).')
        keys, value = (part.strip() for part in entry.split('='))
        if not _FORCE_KEY.fullmatch(keys):
            raise OptionError(f'--force_yml {entry}: the key path must be names joined by ":" (letters, digits, _, -, '
                              f'.), e.g. train:optim_g:lr.')
        value = _force_value(entry, value.strip())
        node, path = opt, keys.split(':')
        for i, key in enumerate(path[:-1]):
            if not isinstance(node, dict) or key not in node or not isinstance(node[key], dict):
                raise OptionError(f'--force_yml {entry}: the options have no section {":".join(path[:i + 1])} '
                                  f'(BasicSR only sets keys inside existing sections).')
            node = node[key]
        node[path[-1]] = value
    return opt


def check_option_file(argv, is_train=None):
    """Find `-opt FILE` in a BasicSR command line, read it safely and check it (with any --force_yml applied).

    Args:
        argv (list[str]): The command line (without the program name).
        is_train (bool | None): gradnet-train (True), gradnet-test (False) or unknown (None).

    Returns:
        tuple[str, OrderedDict] | None: The file and its options as read (before --force_yml, which BasicSR applies
        itself), or None when there is no -opt (BasicSR's own parser reports that).
    """
    args = _command_line(argv)
    if args.opt is None:
        return None
    opt = read_option_file(args.opt)
    if args.force_yml:
        check_options(apply_force_yml(copy.deepcopy(opt), args.force_yml), f'{args.opt} (with --force_yml)', is_train)
    else:
        check_options(opt, args.opt, is_train)
    return args.opt, opt


def main(argv=None):
    """`python -m gradnet_arch.option_check FILE...`: check option files without running anything."""
    import gradnet_arch  # noqa: F401  (registers the plugin's classes, which the files name)
    from gradnet_arch.errors import user_errors

    parser = argparse.ArgumentParser(
        prog='python -m gradnet_arch.option_check',
        description='Check BasicSR option files the way gradnet-train / gradnet-test do, without running anything '
        '(the files are read with the safe YAML loader only).')
    parser.add_argument('files', nargs='+', metavar='FILE')
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--train', action='store_true', help='check as a training file (default: files with train:)')
    group.add_argument('--test', action='store_true', help='check as a test file')
    args = parser.parse_args(argv)
    is_train = True if args.train else (False if args.test else None)
    with user_errors(leading_newline=False):
        for path in args.files:
            check_options(read_option_file(path), path, is_train)
            print(f'{path}: ok')


if __name__ == '__main__':
    main()
