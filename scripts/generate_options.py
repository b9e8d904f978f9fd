"""Write the option YAMLs of every experiment of the paper under options/, from a few templates.

    python scripts/generate_options.py           # (re)write them, and the option-file table in docs/datasets.md
    python scripts/generate_options.py --check   # write nothing; exit 1 if a file differs from what would be written

Every file uses BasicSR's own option keys, so it runs with `gradnet-train` / `gradnet-test` and with BasicSR's
`basicsr/train.py` / `basicsr/test.py`. Paths follow BasicSR's conventions, relative to the directory the run starts
in (the BasicSR root or this repository's root): data under `datasets/`, checkpoints under `experiments/<name>/models/`,
test output under `results/<name>/`. docs/datasets.md says how each dataset is made.

Edit the templates here, never the generated files: `--check` (run by tests/unit/glue/test_option_files.py) fails when a
generated file was edited by hand or is out of date. The two demo files (options/demo/) are hand-written and are left
alone. Only PyYAML is needed (no torch, no BasicSR).

The text is PyYAML's (`yaml.dump` with OptionDumper: BasicSR's `!!float 1e-3`, flow-style lists, `~`), but the files
also carry comments, which say why a value is what it is, and PyYAML cannot write comments (ruamel.yaml can, as
another dependency for one script). So the templates mark values with `note(value, inline, above)`, and one small
post-step, `with_comments`, adds them: PyYAML's block style puts each key on a line of its own, in the templates'
order, so the lines and the keys are walked in step, each line checked against its key, and a mismatch fails loudly
rather than misplacing a comment. The written text is then read back and compared with the options.
"""
import argparse
import copy
import math
import os
import sys
import textwrap
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMAND = 'python scripts/generate_options.py'
DOCS = 'docs/datasets.md'
DOCS_BEGIN = '<!-- BEGIN option-file table: written by scripts/generate_options.py, do not edit by hand -->'
DOCS_END = '<!-- END option-file table -->'
# Sub-folders of options/ that hold generated files only: --check also reports .yml files there it does not write.
GENERATED_DIRS = ('polyu', 'awgn_color', 'awgn_gray', 'ablation')
HAND_WRITTEN = (
    ('options/demo/train_demo_stage1_mskresnet.yml',
     'demo, stage 1: a small MSKResNet on scikit-image photos, sigma 25, CPU (`make demo`; hand-written)'),
    ('options/demo/train_demo_stage2_gradnet.yml', 'demo, stage 2: a small GradNet on the same photos, CPU '
     '(hand-written)'),
)
MAX_LINE = 120

# ---------------------------------------------------------------------------------------------------------------------
# YAML text: PyYAML writes the options (OptionDumper); a post-step (with_comments) adds the templates' comments.


class Sci(float):
    """A float written as `!!float <text>`, BasicSR's notation for 1e-3, 5e3, ..."""

    def __new__(cls, text):
        obj = super().__new__(cls, float(text))
        obj.text = text
        return obj


class Note:
    """A value with comments: `inline` after `key: value` (or after `key:` for a mapping), `above` on lines before."""

    def __init__(self, value, inline=None, above=()):
        self.value, self.inline = value, inline
        self.above = (above, ) if isinstance(above, str) else tuple(above)


def note(value, inline=None, above=()):
    return Note(value, inline, above)


def _unwrap(raw):
    return (raw.value, raw.inline, raw.above) if isinstance(raw, Note) else (raw, None, ())


def plain(raw):
    """The options without comments: what a YAML loader reads back from the written text."""
    value = _unwrap(raw)[0]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return float(value) if isinstance(value, Sci) else value


FLOAT_TAG = 'tag:yaml.org,2002:float'


class OptionDumper(yaml.SafeDumper):
    """PyYAML's safe dumper in the style of BasicSR's option files.

    Lists in flow style (`[0.9, 0.999]`), `~` for None, `!!float 1e-3` for a Sci, a Note written as its value, and no
    anchors (`&id001`) for a list or mapping that two keys share: an option file is a tree.
    """

    def ignore_aliases(self, data):
        return True

    def choose_scalar_style(self):
        # PyYAML quotes a scalar whose tag it must write (`!!float '1e-3'`); BasicSR's files have it plain.
        if self.event.tag == FLOAT_TAG and not self.event.implicit[0]:
            return ''
        return super().choose_scalar_style()


OptionDumper.add_representer(Note, lambda dumper, raw: dumper.represent_data(raw.value))
OptionDumper.add_representer(Sci, lambda dumper, value: dumper.represent_scalar(FLOAT_TAG, value.text))
OptionDumper.add_representer(type(None), lambda dumper, _: dumper.represent_scalar('tag:yaml.org,2002:null', '~'))
OptionDumper.add_representer(
    list, lambda dumper, value: dumper.represent_sequence('tag:yaml.org,2002:seq', value, flow_style=True))


def _keys(raw, depth=0, out=None):
    """[(depth, key, value, inline comment, comments above)] of every key of the option tree, in document order."""
    out = [] if out is None else out
    for key, item in _unwrap(raw)[0].items():
        value, inline, above = _unwrap(item)
        out.append((depth, key, value, inline, above))
        if isinstance(value, dict):
            _keys(value, depth + 1, out)
    return out


def with_comments(text, options):
    """PyYAML's block-style text of `options` with the templates' comments added.

    PyYAML writes no comments, so they are added here. With every mapping in block style (two spaces per level) and
    every other value on its key's line (scalars, flow lists, no line wrapping), each line of PyYAML's text is one key
    of the option tree, in the tree's order: the lines and the keys are walked in step (each line is checked to start
    with its key at its indent), and each key gets its comments (`note(...)`): `# ...` lines above it, `  # ...` at the
    end of its line. A blank line goes around top-level sections, as in BasicSR's own option files.
    """
    lines, keys = text.splitlines(), _keys(options)
    if len(lines) != len(keys):
        raise AssertionError(f'{len(lines)} lines for {len(keys)} keys: a value did not stay on its key\'s line')
    out, previous_section = [], False
    for line, (depth, key, value, inline, above) in zip(lines, keys):
        pad = ' ' * (2 * depth)
        if not line.startswith(f'{pad}{key}:'):
            raise AssertionError(f'expected the key {key!r} at indent {len(pad)}, found {line!r}')
        section = isinstance(value, dict)
        if depth == 0:
            if out and (section or previous_section):
                out.append('')
            previous_section = section
        out += [f'{pad}# {comment}' for comment in above]
        out.append(f'{line}  # {inline}' if inline else line)
    return out


def comment_block(paragraphs):
    """Header lines: each paragraph is wrapped to the line limit, except empty ones and ones starting with two spaces
    (commands, aligned lists), which are kept as they are."""
    lines = []
    for text in paragraphs:
        if not text or text.startswith('  '):
            lines.append(f'# {text}'.rstrip())
        else:
            # Code spans (`...`) are never broken across lines: their spaces are protected while wrapping.
            parts = text.split('`')
            text = '`'.join(part.replace(' ', '\0') if i % 2 else part for i, part in enumerate(parts))
            lines += [
                f'# {line}'.replace('\0', ' ')
                for line in textwrap.wrap(text, MAX_LINE - 2, break_on_hyphens=False, break_long_words=False)
            ]
    return lines


def to_yaml(header, options):
    """The YAML text of `options` (in their key order), after the header comment."""
    body = yaml.dump(
        options, Dumper=OptionDumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1 << 20)
    lines = comment_block(header) + with_comments(body, options)
    text = '\n'.join(lines) + '\n'
    if yaml.safe_load(text) != plain(options):
        raise AssertionError('the YAML writer lost something: the text does not read back as the options')
    too_long = [line for line in lines if len(line) > MAX_LINE]
    if too_long:
        raise AssertionError(f'lines over {MAX_LINE} characters: {too_long}')
    return text


# ---------------------------------------------------------------------------------------------------------------------
# Building blocks shared by all experiments.

# The released code's configuration (BN on, r = 16); the paper's drawing is batch_norm false, reduction 2.
PAPER_NET = {'num_feat': 64, 'num_modules': 4, 'num_units': 4, 'batch_norm': True, 'reduction': 16}
# The CPU preset of the PolyU run: small enough to train in minutes on two cores. NOT the paper's size.
CPU_NET = {'num_feat': 32, 'num_modules': 2, 'num_units': 2, 'batch_norm': True, 'reduction': 16}
PARAMS = {
    ('MSKResNet', 3): '1,484,688',
    ('MSKResNet', 1): '1,482,384',
    ('GradNet', 3): '1,626,561',
    ('GradNet', 1): '1,528,937'
}  # the released-code configuration, asserted by tests/unit/archs/test_archs.py
SEED = 10
BATCH = {1: 64, 2: 48}
BATCH_NOTE = {1: 'the released code: 64 for the MSKResNet stage', 2: 'the released code\'s GradNet batch'}
NO_EMA = 'no EMA, as in the released code: checkpoints hold `params` only'
FROZEN = 'GradNetModel leaves the frozen pre-denoiser out of the optimizer'
SCALE_NOTE = 'PairedImageDataset reads `scale` (parse_options copies it into every dataset); denoising is 1x'
TEST_GPU = 'testing runs on one GPU; 0 for CPU'
UPSTREAM = '(BasicSR checkout, plugin installed)'


def run_train(path):
    return f'  gradnet-train -opt {path}'


def run_test(path):
    upstream = f'  python basicsr/test.py -opt {path}'
    return (f'  gradnet-test -opt {path}',
            f'{upstream}   {UPSTREAM}' if len(upstream) + len(UPSTREAM) < 112 else upstream)


def metrics(gray=False):
    metric = {'crop_border': 0, 'test_y_channel': False}
    psnr_ssim = {name: {'type': f'calculate_{name}', **metric} for name in ('psnr', 'ssim')}
    return note(psnr_ssim, 'the field\'s convention: ' + ('grey' if gray else 'RGB') + ', no border crop')


def checkpoint(name):
    """Where BasicSR's training run `name` leaves its last network."""
    return f'experiments/{name}/models/net_g_latest.pth'


def paper_size_note(arch, num_in_ch, size):
    if size is not PAPER_NET:
        return 'CPU preset of the released-code configuration (the paper: num_feat 64, 4 modules x 4 units)'
    own = ' own' if arch == 'GradNet' else ''
    return f'the released-code configuration ({PARAMS[arch, num_in_ch]}{own} parameters); the paper\'s drawing: ' + \
        ('see GradNet\'s docstring' if arch == 'GradNet' else 'batch_norm false, reduction 2')


def mskresnet(num_in_ch, size):
    return {'type': 'MSKResNet', 'num_in_ch': num_in_ch, **size, 'global_residual': True}


GRADIENT_NOTES = {
    'denoised': 'Sobel of the pre-denoised image (the method)',
    'noisy': 'ABLATION: Sobel of the noisy input (no pre-denoiser)',
    'none': 'ABLATION: no gradient input at all (no Sobel, no pre-denoiser): a plain MSKResNet-like net',
}
FUSION_NOTES = {
    'I': 'ABLATION: concatenated with the input image, before the shallow conv (the paper\'s position I)',
    'II': 'concatenated with the shallow features (the paper\'s proposal)',
    'III': 'ABLATION: concatenated with the denoise block\'s output, before the last conv (position III)',
    'IV': 'ABLATION: multiplied with the reconstruction at the output (position IV)',
}

RESIDUAL_NOTES = {
    False: 'the released code leaves the input addition out (the paper\'s figure has it)',
    True: 'the paper\'s figure (not the released code): a short run then only learns the residual',
}


def gradnet(num_in_ch, size, stage1, gradient_source='denoised', fusion='II', global_residual=False):
    """GradNet's network_g for training; `stage1` is the stage-1 run whose network_g is the pre-denoiser."""
    net = {'type': 'GradNet', 'num_in_ch': num_in_ch, **size}
    net['global_residual'] = note(global_residual, RESIDUAL_NOTES[global_residual])
    net['gradient_source'] = note(gradient_source, GRADIENT_NOTES[gradient_source])
    if gradient_source != 'none':
        net['fusion'] = note(fusion, FUSION_NOTES[fusion])
    if gradient_source == 'denoised':
        pre = mskresnet(num_in_ch, size)
        pre['type'] = note('MSKResNet', 'exactly stage 1\'s network_g')
        pre['pretrained'] = checkpoint(stage1)
        pre['param_key'] = note('params', 'stage 1 runs without EMA (ema_decay 0), so its checkpoints hold `params` '
                                'only')
        pre['strict'] = True
        net['predenoiser'] = note(pre, 'frozen, in eval mode; its weights are saved inside GradNet\'s checkpoint')
    if gradient_source != 'denoised' or fusion != 'II':
        return note(net, 'the reference\'s released-code configuration but for the ablated option (marked ABLATION)')
    return note(net, paper_size_note('GradNet', num_in_ch, size))


def for_testing(train_net):
    """A training network_g as a test file needs it: the pre-denoiser is not loaded from its own file."""
    net = dict(_unwrap(train_net)[0])
    if 'predenoiser' not in net:
        return note(net, 'exactly the training run\'s network_g')
    pre = {key: value for key, value in _unwrap(net['predenoiser'])[0].items() if key not in ('param_key', 'strict')}
    pre['type'] = 'MSKResNet'
    pre['pretrained'] = note(
        None,
        above=('The GradNet checkpoint below holds the pre-denoiser\'s weights too (under `predenoiser.`), so stage '
               '1\'s file is',
               'not needed: the pre-denoiser starts random here and is overwritten by pretrain_network_g.'))
    net['predenoiser'] = pre
    return note(net, 'exactly stage 2\'s network_g, except that the pre-denoiser is not loaded from its own file')


def train_section(total_iter, milestones, milestone_note, gradient_loss, stage):
    optim = {'type': 'Adam', 'lr': Sci('1e-3'), 'weight_decay': 0, 'betas': [0.9, 0.999]}
    train = {'ema_decay': note(0, NO_EMA), 'optim_g': note(optim, FROZEN if stage == 2 else None)}
    train['scheduler'] = {'type': 'MultiStepLR', 'milestones': note(milestones, milestone_note), 'gamma': 0.2}
    train['total_iter'] = total_iter
    train['warmup_iter'] = note(-1, 'no warm-up')
    train['pixel_opt'] = {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'}
    if gradient_loss:
        train['gradient_opt'] = note({
            'type': 'GradientConsistencyLoss',
            'loss_weight': 0.1,
            'reduction': 'mean'
        }, 'lambda = 0.1 as in the paper, with a mean reduction like the pixel term (the released code sums)')
    return train


AMP_NOTE = ('GradNetModel\'s mixed precision (weights, EMA and checkpoints stay fp32): bf16 on Ampere or later GPUs',
            'and on CPUs with native bf16 (other CPUs fall back to fp32); amp: fp16 for older GPUs; amp: false = fp32.')


def fast_path():
    """The top-level `amp` and `channels_last` options of GradNetModel (bf16 + channels_last)."""
    return {'amp': note('bf16', above=AMP_NOTE), 'channels_last': note(True, 'NHWC: fastest in oneDNN and cuDNN')}


def train_file(name, num_gpu, datasets, network_g, train, val_freq, checkpoint_freq, print_freq=100, tb_logger=True):
    opt = {'name': name, 'model_type': 'GradNetModel'}
    if any(_unwrap(d)[0]['type'] == 'PairedImageDataset' for d in datasets.values()):
        opt['scale'] = note(1, SCALE_NOTE)
    opt.update(num_gpu=num_gpu, manual_seed=SEED, **fast_path(), datasets=datasets, network_g=network_g)
    opt['path'] = {'pretrain_network_g': None, 'param_key_g': 'params', 'strict_load_g': True, 'resume_state': None}
    opt['train'] = train
    opt['val'] = {'val_freq': val_freq, 'save_img': False, 'metrics': metrics(plain(network_g)['num_in_ch'] == 1)}
    opt['logger'] = {
        'print_freq': print_freq,
        'save_checkpoint_freq': checkpoint_freq,
        'use_tb_logger': tb_logger,
        'wandb': {
            'project': None,
            'resume_id': None
        }
    }
    opt['dist_params'] = {'backend': 'nccl', 'port': 29500}
    return opt


def test_file(name, num_gpu, datasets, train_net, trained_by, with_metrics=True):
    opt = {'name': name, 'model_type': 'GradNetModel'}
    if any(_unwrap(d)[0]['type'] == 'PairedImageDataset' for d in datasets.values()):
        opt['scale'] = note(1, SCALE_NOTE)
    opt.update(num_gpu=num_gpu, manual_seed=SEED, **fast_path(), datasets=datasets, network_g=for_testing(train_net))
    opt['path'] = {
        'pretrain_network_g': checkpoint(trained_by),
        'param_key_g': note('params', 'the training run has no EMA (ema_decay 0), so its checkpoints hold `params` '
                            'only'),
        'strict_load_g': note(True, 'every key, the pre-denoiser\'s included, must be in the file'),
    }
    if with_metrics:
        opt['val'] = {'save_img': False, 'suffix': None, 'metrics': metrics(plain(train_net)['num_in_ch'] == 1)}
    else:
        opt['val'] = {
            'save_img': note(True, 'the point of this run; no ground truth, so no metrics'),
            'suffix': note(None, 'file names: <input name>_<name>.png'),
        }
    return opt


def gaussian(name, root, color, noise, loader=None, io_backend='disk'):
    """A GaussianNoiseDataset entry: `noise` is {sigma: s} or {sigma_range: [lo, hi]}; `loader` holds the training
    keys (gt_size, batch, ...), None for validation/test (whole images, noise seeded per image)."""
    data = {'name': name, 'type': 'GaussianNoiseDataset', 'dataroot_gt': root, 'io_backend': {'type': io_backend}}
    data['color'] = color
    data.update(noise)
    if loader is None:
        data['noise_seed'] = note(0, 'seed 0 for every image: the same noisy images in every run')
    else:
        data.update(loader)
    return data


def paired_lmdb(name, gt, lq, loader=None):
    data = {
        'name': name,
        'type': 'PairedImageDataset',
        'dataroot_gt': gt,
        'dataroot_lq': lq,
        'filename_tmpl': '{}',
        'io_backend': {
            'type': 'lmdb'
        }
    }
    data.update(loader or {})
    return data


def gpu_loader(stage, enlarge, enlarge_note):
    return {
        'gt_size': note(80, 'the released code\'s random 80x80 crops'),
        'use_hflip': True,
        'use_rot': note(True, 'vertical flips and transposes, as in the released code'),
        'num_worker_per_gpu': 8,
        'batch_size_per_gpu': note(BATCH[stage], BATCH_NOTE[stage]),
        'dataset_enlarge_ratio': note(enlarge, enlarge_note),
        'prefetch_mode': 'cuda',
        'pin_memory': note(True, 'required by prefetch_mode cuda'),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Real noise, paper scale: SIDD training and validation, SIDD benchmark and DND inference.

SIDD_STAGE1 = 'gradnet_stage1_mskresnet_sidd'
SIDD_STAGE2 = 'gradnet_stage2_gradnet_sidd'
SIDD_DATA = (
    'Data (BasicSR/NAFNet\'s `datasets/` convention; docs/datasets.md says which command makes each):',
    '  datasets/SIDD/train/gt_crops.lmdb, input_crops.lmdb  SIDD-Medium sRGB GT / noisy pairs cut into 512x512 crops',
    '                                                       (step 384), the same key in both (`prep sidd-train`)',
    '  datasets/SIDD/val/gt_crops.lmdb, input_crops.lmdb    the 1280 256x256 validation blocks (`prep sidd-val`)',
    '                                                       (Validation{Gt,Noisy}BlocksSrgb.mat)',
    '  each one a BasicSR LMDB: data.mdb + meta_info.txt with lines `<key>.png (H,W,C) <compression>`.',
)


def sidd_datasets(stage):
    return {
        'train':
        paired_lmdb('SIDD_Medium_sRGB', 'datasets/SIDD/train/gt_crops.lmdb', 'datasets/SIDD/train/input_crops.lmdb',
                    gpu_loader(stage, 4, '4 crops per image per epoch (the released code)')),
        'val':
        paired_lmdb('SIDD_val', 'datasets/SIDD/val/gt_crops.lmdb', 'datasets/SIDD/val/input_crops.lmdb'),
    }


def sidd_net(stage):
    if stage == 1:
        return note(mskresnet(3, PAPER_NET), paper_size_note('MSKResNet', 3, PAPER_NET))
    return gradnet(3, PAPER_NET, SIDD_STAGE1)


def sidd_files():
    files = []
    path = 'options/train_mskresnet_sidd.yml'
    train = train_section(300000, [60000, 120000, 180000, 240000], 'epochs 20/40/60/80 of 100 (see the top)', False, 1)
    train['ema_decay'] = note(
        0,
        above=('No EMA, as in the released code (and BasicSR\'s EMA averages weights only: the BatchNorm statistics '
               'would come from',
               'the live net). The checkpoints therefore hold `params` only; stage 2 loads them with param_key: '
               'params.'))
    opt = train_file(SIDD_STAGE1, note('auto', 'every visible GPU'), sidd_datasets(1), sidd_net(1), train, Sci('5e3'),
                     Sci('5e3'))
    header = (
        'Stage 1 for real noise: the naive denoise block (MSKResNet, released-code configuration) on SIDD-Medium '
        'sRGB, GPU. Its net_g_latest.pth is the frozen pre-denoiser of stage 2 (options/train_gradnet_sidd.yml).',
        run_train(path),
        f'  torchrun --nproc_per_node=N -m gradnet_arch.train -opt {path} --launcher pytorch',
        '',
        *SIDD_DATA,
        '',
        'Iterations: the released code trains 400 epochs at most, each drawing 4 random 80x80 crops from every '
        'training image, and divides the lr by 5 at epoch 20, then after every 20 epochs without validation gain, '
        'stopping once the lr would fall below 1e-6. Had that rule fired every 20 epochs: 1e-3 -> 2e-4 (epoch 20) -> '
        '4e-5 (40) -> 8e-6 (60) -> 1.6e-6 (80) -> stop (100). A fixed MultiStepLR with gamma 0.2 is the nearest '
        'BasicSR schedule; it is set to that regular case, i.e. 100 epochs with milestones at epochs 20/40/60/80.',
        'Conversion: total_iter = epochs * crops per epoch / batch, crops per epoch = 4 * N (N = LMDB entries, here '
        'the 512x512 crops standing in for images; dataset_enlarge_ratio 4 makes BasicSR\'s epoch count match). N (how '
        'many crops SIDD-Medium gives at 512x512, step 384) is NOT known here, so total_iter is a round number: 300k '
        'iterations * 64 = 19.2M crops = 100 epochs if N = 48,000 (400 epochs if N = 12,000). Once the LMDB exists, '
        'take N = `wc -l datasets/SIDD/train/gt_crops.lmdb/meta_info.txt` and set total_iter = 100 * 4 * N / 64, with '
        'the milestones at 1/5, 2/5, 3/5 and 4/5 of it (or keep 300k: it then is 19.2M / (4 * N) epochs).',
    )
    files.append((path, 'real noise, stage 1 (MSKResNet) on SIDD-Medium sRGB, paper scale, GPU', header, opt))

    path = 'options/train_gradnet_sidd.yml'
    train = train_section(400000, [80000, 160000, 240000, 320000], 'epochs 20/40/60/80 of 100 (see the top)', True, 2)
    train['ema_decay'] = note(0, 'as stage 1: no EMA in the released code; checkpoints hold `params` only')
    opt = train_file(SIDD_STAGE2, note('auto', 'every visible GPU'), sidd_datasets(2), sidd_net(2), train, Sci('5e3'),
                     Sci('5e3'))
    header = (
        'Stage 2 for real noise: GradNet (released-code configuration) on SIDD-Medium sRGB, fed the Sobel gradient of '
        'the frozen stage-1 MSKResNet\'s output; L1 + 0.1 * gradient-consistency loss. GPU.',
        '  gradnet-train -opt options/train_mskresnet_sidd.yml   (stage 1 first)',
        run_train(path),
        'The released code\'s pre-denoiser for real noise is a 20-layer DnCNN with a skip; here it is the plugin\'s '
        'MSKResNet (stage 1). Any registered arch can be swapped in under network_g.predenoiser.',
        '',
        'Data: the same LMDBs as stage 1 (options/train_mskresnet_sidd.yml, docs/datasets.md).',
        '',
        'Iterations: the same conversion as stage 1 (see options/train_mskresnet_sidd.yml): total_iter = epochs * 4 * '
        'N / batch with N = LMDB entries, which is NOT known here. 400k iterations * 48 = 19.2M crops, the same as '
        'stage 1\'s 300k * 64, i.e. 100 epochs if N = 48,000; milestones at epochs 20/40/60/80 of them. Recompute '
        'with the real N.',
    )
    files.append((path, 'real noise, stage 2 (GradNet) on SIDD-Medium sRGB, paper scale, GPU', header, opt))

    path = 'options/test_gradnet_sidd.yml'
    datasets = {
        'test_1':
        note(
            paired_lmdb('SIDD_val', 'datasets/SIDD/val/gt_crops.lmdb', 'datasets/SIDD/val/input_crops.lmdb'),
            'the `test` prefix sets phase: test (whole blocks, no crops or flips)')
    }
    opt = test_file('test_gradnet_sidd', note('auto', TEST_GPU), datasets, sidd_net(2), SIDD_STAGE2)
    header = (
        'Test of the stage-2 GradNet (options/train_gradnet_sidd.yml) on the 1280 SIDD validation blocks, with '
        'BasicSR\'s test pipeline; PSNR/SSIM go to the log under results/test_gradnet_sidd/.',
        *run_test(path),
        'The validation blocks have public ground truth; the benchmark blocks do not '
        '(options/test_gradnet_sidd_benchmark.yml).',
        'Data: datasets/SIDD/val/{gt,input}_crops.lmdb, BasicSR LMDBs (data.mdb + meta_info.txt, the same keys in '
        'both), made by `python -m gradnet_arch.prep sidd-val` (docs/datasets.md).',
    )
    files.append((path, 'GradNet (SIDD) on the 1280 SIDD validation blocks: PSNR/SSIM', header, opt))

    inference = (
        ('options/test_gradnet_sidd_benchmark.yml', 'test_gradnet_sidd_benchmark', 'SIDD_benchmark',
         'datasets/SIDD/benchmark/input_blocks',
         'GradNet (SIDD) on the 1280 SIDD benchmark blocks: denoised PNGs to submit, no metrics', (
             'Inference of the stage-2 GradNet (options/train_gradnet_sidd.yml) on the 1280 noisy SIDD benchmark '
             'blocks, whose ground truth is not public: BasicSR\'s test pipeline writes the denoised blocks as PNGs '
             '(no metrics) to results/test_gradnet_sidd_benchmark/visualization/SIDD_benchmark/, to be bundled into '
             'SubmitSrgb.mat (DenoisedBlocksSrgb, a 40x32 cell of uint8 256x256x3, and TimeMPSrgb) for the SIDD '
             'site.',
             *run_test('options/test_gradnet_sidd_benchmark.yml'),
             'Data: datasets/SIDD/benchmark/input_blocks/, one 8-bit PNG per block of BenchmarkNoisyBlocksSrgb.mat, '
             'made by `python -m gradnet_arch.prep sidd-benchmark` (docs/datasets.md). SingleImageDataset reads every '
             'file of the folder: keep nothing else in it.',
         )),
        ('options/test_gradnet_dnd.yml', 'test_gradnet_dnd', 'DND', 'datasets/DND/crops',
         'GradNet (SIDD) on the 1000 DND crops: denoised PNGs to submit, no metrics', (
             'Inference of the stage-2 GradNet trained on SIDD (options/train_gradnet_sidd.yml) on the DND benchmark '
             '(50 sRGB images x 20 boxes of 512x512), whose ground truth is not public: BasicSR\'s test pipeline '
             'writes the denoised crops as PNGs (no metrics) to results/test_gradnet_dnd/visualization/DND/, to be '
             'bundled per image into .mat files (a 1x20 cell Idenoised, israw = false, eval_version = \'1.0\') for '
             'the DND site. DND has no training data; the SIDD model is used, as usual in the field.',
             *run_test('options/test_gradnet_dnd.yml'),
             'Data: datasets/DND/crops/{img:04d}_{box:02d}.png, 16-bit PNGs cut from images_srgb/*.mat with info.mat '
             'by `python -m gradnet_arch.prep dnd` (docs/datasets.md).',
             'Caveat: BasicSR\'s SingleImageDataset decodes with cv2.IMREAD_COLOR, which turns 16-bit PNGs into 8 '
             'bits: the net sees the crops quantised to 8 bits (an error below one grey level, far below DND\'s '
             'noise), and the results are 8-bit PNGs.',
         )),
    )
    for path, name, dataset_name, root, what, header in inference:
        single = {
            'name': dataset_name,
            'type': 'SingleImageDataset',
            'dataroot_lq': root,
            'io_backend': {
                'type': 'disk'
            }
        }
        datasets = {'test_1': note(single, 'noisy images only; the `test` prefix sets phase: test (whole images)')}
        opt = test_file(name, note('auto', TEST_GPU), datasets, sidd_net(2), SIDD_STAGE2, with_metrics=False)
        files.append((path, what, header, opt))
    return files


# ---------------------------------------------------------------------------------------------------------------------
# Real noise on the CPU: PolyU with a small preset of the SIDD pipeline, trainable on a 2-core machine.

POLYU_STAGE1 = 'gradnet_stage1_mskresnet_polyu_cpu'
POLYU_STAGE2 = 'gradnet_stage2_gradnet_polyu_cpu'
POLYU_ITER = 1000
POLYU_MILESTONES = [600, 800]
POLYU_DATA = (
    'Data: PolyU\'s `*_real` (noisy) / `*_mean` (clean) pairs, split into train and val by `python -m '
    'gradnet_arch.prep paired` (docs/datasets.md), as BasicSR LMDBs with the same keys in GT and noisy:',
    '  datasets/PolyU/train/gt.lmdb, lq.lmdb   training pairs',
    '  datasets/PolyU/val/gt.lmdb, lq.lmdb     held-out pairs (validation and test)',
)
CPU_PRESET = ('CPU PRESET, NOT THE PAPER\'S SIZE: num_feat 32 and 2 modules x 2 units (the paper: 64, 4 x 4), batch 8 '
              f'of 64x64 crops, {POLYU_ITER} iterations per stage; GradNet adds its input (global_residual, the '
              'paper\'s figure) so that the short run only learns the residual.')


def polyu_datasets():
    loader = {
        'gt_size': note(64, 'CPU preset (the paper: 80)'),
        'use_hflip': True,
        'use_rot': note(True, 'vertical flips and transposes, as in the released code'),
        'num_worker_per_gpu': note(1, 'with num_gpu 0, BasicSR starts this many loader processes'),
        'batch_size_per_gpu': note(8, 'CPU preset (the paper: 64 for stage 1, 48 for GradNet)'),
        'dataset_enlarge_ratio': note(20, 'only makes BasicSR\'s epochs longer; total_iter decides the run'),
        'prefetch_mode': None,
    }
    return {
        'train': paired_lmdb('PolyU_train', 'datasets/PolyU/train/gt.lmdb', 'datasets/PolyU/train/lq.lmdb', loader),
        'val': paired_lmdb('PolyU_val', 'datasets/PolyU/val/gt.lmdb', 'datasets/PolyU/val/lq.lmdb'),
    }


def polyu_net(stage):
    if stage == 1:
        return note(mskresnet(3, CPU_NET), paper_size_note('MSKResNet', 3, CPU_NET))
    return gradnet(3, CPU_NET, POLYU_STAGE1, global_residual=True)


def polyu_files():
    files = []
    for stage in (1, 2):
        arch = 'mskresnet' if stage == 1 else 'gradnet'
        path = f'options/polyu/train_{arch}_polyu_cpu.yml'
        train = train_section(POLYU_ITER, POLYU_MILESTONES, 'CPU preset: two late decays in a short run', stage == 2,
                              stage)
        opt = train_file(
            POLYU_STAGE1 if stage == 1 else POLYU_STAGE2,
            note(0, 'CPU: sized for a 2-core machine'),
            polyu_datasets(),
            polyu_net(stage),
            train,
            500,
            500,
            print_freq=50,
            tb_logger=False)
        if stage == 1:
            header = ('PolyU real noise, stage 1 on the CPU: a small MSKResNet pre-denoiser trained with the SIDD '
                      'files\' pipeline (paired LMDBs, L1) on real data that is at hand.', CPU_PRESET, run_train(path))
            what = 'real noise, stage 1 (small MSKResNet) on PolyU, CPU preset'
        else:
            header = ('PolyU real noise, stage 2 on the CPU: a small GradNet fed the Sobel gradient of the frozen '
                      'stage-1 net; L1 + 0.1 * gradient-consistency loss; the SIDD files\' pipeline on real data that '
                      'is at hand.', CPU_PRESET, '  gradnet-train -opt options/polyu/train_mskresnet_polyu_cpu.yml   '
                      '(stage 1 first)', run_train(path))
            what = 'real noise, stage 2 (small GradNet) on PolyU, CPU preset'
        header += ('For the paper\'s size, use network_g and the train section of options/train_*_sidd.yml.', '',
                   *POLYU_DATA)
        files.append((path, what, header, opt))

    path = 'options/polyu/test_gradnet_polyu_cpu.yml'
    datasets = {
        'test_1':
        note(
            paired_lmdb('PolyU_val', 'datasets/PolyU/val/gt.lmdb', 'datasets/PolyU/val/lq.lmdb'),
            'the held-out pairs (there is no separate PolyU test split here)')
    }
    opt = test_file('test_gradnet_polyu_cpu', note(0, 'CPU'), datasets, polyu_net(2), POLYU_STAGE2)
    header = ('Test of the PolyU CPU-preset GradNet (options/polyu/train_gradnet_polyu_cpu.yml) on the held-out PolyU '
              'pairs; PSNR/SSIM go to the log under results/test_gradnet_polyu_cpu/.', CPU_PRESET, *run_test(path), '',
              *POLYU_DATA)
    files.append((path, 'GradNet (PolyU CPU preset) on the held-out PolyU pairs: PSNR/SSIM', header, opt))
    return files


# ---------------------------------------------------------------------------------------------------------------------
# Synthetic noise (AWGN): colour on CBSD432, grey on Train400; one model per sigma (the paper: non-blind), plus a blind
# colour model.

AWGN = {
    'color':
    dict(
        folder='awgn_color',
        train_set='CBSD432',
        tag='cbsd432',
        images=432,
        color='rgb',
        channels=3,
        lmdb='datasets/CBSD432/CBSD432_sub.lmdb',
        val=('CBSD68', 'datasets/CBSD68'),
        tests=(('CBSD68', 'datasets/CBSD68'), ('Kodak24', 'datasets/Kodak24'), ('McMaster', 'datasets/McMaster'),
               ('Urban100', 'datasets/Urban100')),
        levels=(15, 25, 50, 'blind'),
        describe='colour AWGN'),
    'gray':
    dict(
        folder='awgn_gray',
        train_set='Train400',
        tag='train400',
        images=400,
        color='gray',
        channels=1,
        lmdb='datasets/Train400/Train400_sub.lmdb',
        val=('BSD68', 'datasets/BSD68'),
        tests=(('BSD68', 'datasets/BSD68'), ('Set12', 'datasets/Set12')),
        levels=(15, 25, 50),
        describe='grey AWGN'),
}
AWGN_EPOCHS = 400
BLIND_RANGE = [0, 55]
BLIND_VAL_SIGMA = 25
BLIND_TEST_SIGMAS = (15, 25, 50)
AWGN_ENLARGE = 100


def level_tag(level):
    return 'blind' if level == 'blind' else f'sigma{level}'


def level_text(level):
    return f'blind (sigma in [{BLIND_RANGE[0]}, {BLIND_RANGE[1]}])' if level == 'blind' else f'sigma {level}'


def awgn_run(kind, level, stage):
    arch = 'mskresnet' if stage == 1 else 'gradnet'
    return f'gradnet_stage{stage}_{arch}_{AWGN[kind]["tag"]}_{level_tag(level)}'


def awgn_path(kind, level, stem):
    return f'options/{AWGN[kind]["folder"]}/{stem}_{AWGN[kind]["tag"]}_{level_tag(level)}.yml'


def awgn_noise(level, phase):
    if level != 'blind':
        return {'sigma': level}
    if phase == 'train':
        return {'sigma_range': note(BLIND_RANGE, 'blind: sigma drawn uniformly per crop (see the top)')}
    return {'sigma': note(BLIND_VAL_SIGMA, 'the blind model validates at sigma 25 (and is tested at 15/25/50)')}


def awgn_datasets(kind, level, stage):
    cfg = AWGN[kind]
    loader = gpu_loader(stage, AWGN_ENLARGE, 'only makes BasicSR\'s epochs longer (few LMDB entries); total_iter '
                        'decides the run')
    return {
        'train': gaussian(cfg['train_set'], cfg['lmdb'], cfg['color'], awgn_noise(level, 'train'), loader, 'lmdb'),
        'val': gaussian(cfg['val'][0], cfg['val'][1], cfg['color'], awgn_noise(level, 'val')),
    }


def awgn_net(kind, level, stage, **ablation):
    channels = AWGN[kind]['channels']
    if stage == 1:
        return note(mskresnet(channels, PAPER_NET), paper_size_note('MSKResNet', channels, PAPER_NET))
    return gradnet(channels, PAPER_NET, awgn_run(kind, level, 1), **ablation)


def awgn_schedule(kind, stage):
    """total_iter for AWGN_EPOCHS epochs of 4 crops per training image, milestones at 1/5 .. 4/5 of it."""
    total = math.ceil(AWGN_EPOCHS * 4 * AWGN[kind]['images'] / BATCH[stage])
    return total, [round(total * k / 5) for k in range(1, 5)]


def awgn_train_section(kind, stage, gradient_loss=None):
    """The AWGN `train` section; the gradient loss is GradNet's (stage 2) unless `gradient_loss` says otherwise."""
    gradient_loss = stage == 2 if gradient_loss is None else gradient_loss
    total, milestones = awgn_schedule(kind, stage)
    epochs = '/'.join(str(AWGN_EPOCHS * k // 5) for k in range(1, 5))
    return train_section(total, milestones, f'epochs {epochs} of {AWGN_EPOCHS} (see the top)', gradient_loss, stage)


def awgn_iterations(kind, stage):
    cfg = AWGN[kind]
    total, milestones = awgn_schedule(kind, stage)
    crops = 4 * cfg['images']
    return (
        f'Iterations: the released code runs at most {AWGN_EPOCHS} epochs of 4 random 80x80 crops per training image, '
        'dividing the lr by 5 at epoch 20 and then after every 20 epochs without validation gain, and stops once the '
        f'lr would fall below 1e-6. With {cfg["images"]} images an epoch is only {crops:,} crops (about '
        f'{crops // BATCH[stage]} iterations), too short for 20 epochs without validation gain until late in '
        f'training, so the run is taken to go the full {AWGN_EPOCHS} epochs: {AWGN_EPOCHS} * 4 * {cfg["images"]} = '
        f'{AWGN_EPOCHS * crops:,} crops = {total:,} iterations at batch {BATCH[stage]}. The fixed MultiStepLR '
        f'(gamma 0.2) has the SIDD files\' shape: 4 decays, at 1/5 .. 4/5 of the run '
        f'({", ".join(map(str, milestones))}), ending at 1.6e-6, just above the released code\'s stop. The '
        'crops LMDB only makes reading fast: iterations are counted in crops of the original images.', )


def awgn_data(kind):
    cfg = AWGN[kind]
    tests = ', '.join(f'{name} ({root}/)' for name, root in cfg['tests'])
    return (
        f'Data (docs/datasets.md): {cfg["lmdb"]}, the {cfg["images"]} {cfg["train_set"]} images cut into sub-images '
        f'by `python -m gradnet_arch.prep crops`, read with io_backend lmdb; validation on the {cfg["val"][0]} folder '
        f'{cfg["val"][1]}/ (whole images). Test sets: {tests}. Noise: N(0, (sigma/255)^2) added in [0, 1], without '
        'clipping or quantisation; validation and test noise is seeded per image (noise_seed).', )


BLIND = (f'Blind model: one net for every noise level, trained with sigma drawn uniformly from [{BLIND_RANGE[0]}, '
         f'{BLIND_RANGE[1]}] for each crop. That is DnCNN-B\'s range: it covers the test levels 15/25/50 with a '
         'margin above the highest and includes clean input. The paper trains one model per sigma (non-blind); this '
         'one is an extra, validated at sigma 25 and tested at 15, 25 and 50.')


def awgn_train_files(kind):
    files = []
    cfg = AWGN[kind]
    for level in cfg['levels']:
        for stage in (1, 2):
            path = awgn_path(kind, level, 'train_mskresnet' if stage == 1 else 'train_gradnet')
            opt = train_file(
                awgn_run(kind, level, stage), note('auto', 'every visible GPU'), awgn_datasets(kind, level, stage),
                awgn_net(kind, level, stage), awgn_train_section(kind, stage), Sci('1e3'), Sci('1e3'))
            noise = f'{cfg["describe"]}, {level_text(level)}'
            if stage == 1:
                what = f'{noise}: stage 1 (MSKResNet) on {cfg["train_set"]}, paper scale, GPU'
                head = (f'Stage 1 for {noise}: the naive denoise block (MSKResNet, released-code configuration) on '
                        f'{cfg["train_set"]}, GPU. Its net_g_latest.pth is the frozen pre-denoiser of '
                        f'{awgn_path(kind, level, "train_gradnet")}.', run_train(path))
            else:
                what = f'{noise}: stage 2 (GradNet) on {cfg["train_set"]}, paper scale, GPU'
                head = (f'Stage 2 for {noise}: GradNet (released-code configuration) fed the Sobel gradient of the '
                        f'frozen stage-1 MSKResNet trained at the same noise; L1 + 0.1 * gradient-consistency loss; '
                        f'{cfg["train_set"]}, GPU.',
                        f'  gradnet-train -opt {awgn_path(kind, level, "train_mskresnet")}   (stage 1 first)',
                        run_train(path))
                if kind == 'color' and level == 25:
                    head += ('This is also the reference of the ablations in options/ablation/ (fusion II, gradient '
                             'of the pre-denoised image, gradient loss).', )
            header = head + ('', ) + ((BLIND, '') if level == 'blind' else ()) + awgn_data(kind) + ('', ) + \
                awgn_iterations(kind, stage)
            files.append((path, what, header, opt))
    return files


def awgn_test_datasets(kind, sigma):
    cfg = AWGN[kind]
    return {
        f'test_{i}': gaussian(f'{name}_sigma{sigma}', root, cfg['color'], {'sigma': sigma})
        for i, (name, root) in enumerate(cfg['tests'], 1)
    }


def awgn_test_files(kind):
    files = []
    cfg = AWGN[kind]
    sets = ', '.join(name for name, _ in cfg['tests'])
    for level in cfg['levels']:
        for sigma in (BLIND_TEST_SIGMAS if level == 'blind' else (level, )):
            path = awgn_path(kind, level, 'test_gradnet')
            name = f'test_gradnet_{cfg["tag"]}_{level_tag(level)}'
            if level == 'blind':
                path, name = path.replace('.yml', f'_sigma{sigma}.yml'), f'{name}_sigma{sigma}'
            opt = test_file(name, note('auto', TEST_GPU), awgn_test_datasets(kind, sigma), awgn_net(kind, level, 2),
                            awgn_run(kind, level, 2))
            header = (
                f'Test of the {cfg["describe"]} GradNet, {level_text(level)} '
                f'({awgn_path(kind, level, "train_gradnet")}), at sigma {sigma} on {sets}; PSNR/SSIM per set go to '
                f'the log under results/{name}/.',
                *run_test(path),
                'Noisy images: N(0, (sigma/255)^2) added in [0, 1] without clipping, from a generator seeded with '
                'noise_seed for every image, so every run sees the same noisy images. Data: one folder of clean images '
                'per set (docs/datasets.md).',
            )
            what = f'{cfg["describe"]} GradNet, {level_text(level)}, at sigma {sigma} on {sets}: PSNR/SSIM'
            files.append((path, what, header, opt))
    return files


# ---------------------------------------------------------------------------------------------------------------------
# The paper's ablations: GradNet stage 2 at colour sigma 25, one change each. The reference (fusion II, gradient of the
# pre-denoised image, gradient loss) is the main sigma-25 run, options/awgn_color/train_gradnet_cbsd432_sigma25.yml.

ABLATIONS = (  # (tag, what, network_g changes, gradient loss)
    ('fusion1', 'the gradient fused at position I (concatenated with the noisy input image)', dict(fusion='I'), True),
    ('fusion3', 'the gradient fused at position III (concatenated before the last conv)', dict(fusion='III'), True),
    ('fusion4', 'the gradient fused at position IV (multiplied with the output)', dict(fusion='IV'), True),
    ('grad_noisy', 'the gradient of the noisy input instead of the pre-denoised image', dict(gradient_source='noisy'),
     True),
    ('grad_none', 'no gradient at all: no gradient input and no gradient loss (a plain MSKResNet-like net)',
     dict(gradient_source='none'), False),
    ('no_grad_loss', 'no gradient-consistency loss (L1 only)', {}, False),
)


def ablation_files():
    files = []
    reference = awgn_path('color', 25, 'train_gradnet')
    for tag, what, changes, gradient_loss in ABLATIONS:
        name = f'gradnet_ablation_cbsd432_sigma25_{tag}'
        path = f'options/ablation/train_gradnet_cbsd432_sigma25_{tag}.yml'
        train = awgn_train_section('color', 2, gradient_loss)
        if not gradient_loss:
            train['pixel_opt'] = note(train['pixel_opt'], 'ABLATION: the only loss (no gradient_opt)')
        net = awgn_net('color', 25, 2, **changes)
        opt = train_file(name, note('auto', 'every visible GPU'), awgn_datasets('color', 25, 2), net, train, Sci('1e3'),
                         Sci('1e3'))
        if changes.get('gradient_source', 'denoised') == 'denoised':
            needs = f'  gradnet-train -opt {awgn_path("color", 25, "train_mskresnet")}   (stage 1 first: the frozen ' \
                'pre-denoiser)'
        else:
            needs = 'No pre-denoiser: this run does not need stage 1.'
        header = (
            f'Ablation of the paper, colour AWGN sigma 25: GradNet with {what}.',
            f'Everything else (data, iterations, seed, network size) is {reference}, the reference (fusion II, '
            'gradient of the pre-denoised image, gradient loss), which is not repeated here: compare with its run.',
            needs,
            run_train(path),
        )
        if tag == 'grad_none':
            header += ('Together with no_grad_loss (gradient input, no loss) and the reference (both), this run '
                       '(neither) separates the two ideas of the paper.', )
        header += ('', *awgn_data('color'), '', *awgn_iterations('color', 2))
        files.append((path, f'ablation, colour sigma 25: {what}', header, opt))

        test_path = path.replace('/train_', '/test_')
        test_name = f'test_{name}'
        opt = test_file(test_name, note('auto', TEST_GPU), awgn_test_datasets('color', 25), net, name)
        header = (f'Test of the ablation run {path} (GradNet with {what}) at sigma 25 on '
                  f'{", ".join(n for n, _ in AWGN["color"]["tests"])}; PSNR/SSIM per set go to the log under '
                  f'results/{test_name}/. The reference is {awgn_path("color", 25, "test_gradnet")}.',
                  *run_test(test_path))
        files.append((test_path, f'ablation test: {what}; sigma 25 on the colour test sets', header, opt))
    return files


# ---------------------------------------------------------------------------------------------------------------------


def all_files():
    """[(path, what it runs, header paragraphs, options)], in a stable order."""
    files = sidd_files() + polyu_files()
    for kind in ('color', 'gray'):
        files += awgn_train_files(kind) + awgn_test_files(kind)
    files += ablation_files()
    paths = [path for path, *_ in files]
    assert len(set(paths)) == len(paths), 'two templates write the same file'
    return files


def rendered():
    """{path relative to the repository: text} of everything this script writes."""
    files = all_files()
    out = {}
    for path, _, header, options in files:
        header = (*header, '', f'Written by `{COMMAND}`: edit its templates, not this file.')
        out[path] = to_yaml(header, copy.deepcopy(options))
    out[DOCS] = docs_with_table(files)
    return out


def docs_table(files):
    rows = [(path, what) for path, what, _, _ in files] + list(HAND_WRITTEN)
    lines = [DOCS_BEGIN, '', '| option file | what it runs |', '| --- | --- |']
    lines += [f'| `{path}` | {what} |' for path, what in rows]
    return '\n'.join(lines + ['', DOCS_END])


def docs_with_table(files):
    path = os.path.join(REPO, DOCS)
    text = open(path).read() if os.path.exists(path) else ''
    if DOCS_BEGIN in text and DOCS_END in text:
        before, rest = text.split(DOCS_BEGIN, 1)
        return before + docs_table(files) + rest.split(DOCS_END, 1)[1]
    return text + ('\n' if text else '') + docs_table(files) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(description='Write the option YAMLs of every experiment under options/.')
    parser.add_argument('--check', action='store_true', help='write nothing; exit 1 if a file differs')
    args = parser.parse_args(argv)
    wanted = rendered()
    problems, written = [], 0
    for rel, text in wanted.items():
        path = os.path.join(REPO, rel)
        current = open(path).read() if os.path.exists(path) else None
        if current == text:
            continue
        if args.check:
            problems.append(f'{rel}: {"missing" if current is None else "differs from what the script writes"}')
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text)
        written += 1
        print(f'wrote {rel}')
    problems += [
        f'{rel}: listed as hand-written but missing' for rel, _ in HAND_WRITTEN
        if not os.path.isfile(os.path.join(REPO, rel))
    ]
    for folder in GENERATED_DIRS:
        root = os.path.join(REPO, 'options', folder)
        for entry in sorted(os.listdir(root)) if os.path.isdir(root) else ():
            rel = f'options/{folder}/{entry}'
            if entry.endswith('.yml') and rel not in wanted:
                problems.append(f'{rel}: not written by this script (stale? remove it, or add a template)')
    if problems:
        print('\n'.join(problems), file=sys.stderr)
        if args.check:
            print(f'Run `{COMMAND}` to rewrite them.', file=sys.stderr)
        return 1
    print(f'{len(wanted) - 1} option files and {DOCS}: {"up to date" if args.check else f"{written} written"}.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
