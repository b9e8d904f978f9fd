"""GradNet: a denoiser fed the Sobel gradient of a pre-denoised copy of its input."""
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from gradnet_arch.archs.mskresnet_arch import MSKBody, ResUnit, check_input_channels
from gradnet_arch.archs.predenoiser import build_predenoiser
from gradnet_arch.archs.sobel import Sobel
from gradnet_arch.archs.warm_start import check_embeddable, embed_predenoiser
from gradnet_arch.errors import OptionError
from gradnet_arch.registry import register, reject_unknown_options

GRADIENT_SOURCES = ('denoised', 'noisy', 'none')
FUSIONS = ('I', 'II', 'III', 'IV')


@register(ARCH_REGISTRY)
class GradNet(nn.Module):
    """GradNet (Liu et al., CVPR 2020 Workshops).

    Forward pass (position II, the proposed one): x_hat = D(y) with the frozen pre-denoiser D; G = per-channel Sobel
    magnitude of x_hat; features = ReLU(conv3x3(y)); concat(features, G) (F + C channels) through the MSK body;
    conv3x3 back to C channels; plus y if `global_residual`.

    Defaults are the released-code configuration (BN on, r = 16, no global residual; 1,626,561 own parameters in
    colour). The paper's drawing is `batch_norm: false, reduction: 2, global_residual: true`.

    Args:
        num_in_ch (int): Image channels C, 1 (grey) or 3 (colour). Default: 3.
        num_feat (int): Shallow feature channels F. Default: 64.
        num_modules (int): Modules in the denoise block. Default: 4.
        num_units (int): ResUnits per module. Default: 4.
        batch_norm (bool): BatchNorm in the ResUnits. Default: True.
        reduction (int): Channel-attention reduction r. Default: 16.
        global_residual (bool): Add the noisy input to the output. Default: False (as in the released code).
        gradient_source (str): 'denoised' (Sobel of the pre-denoised image, the method), 'noisy' (Sobel of the
            noisy input, an ablation) or 'none' (no gradient: a plain MSKResNet). Default: 'denoised'.
        fusion (str): Where the gradient enters: 'I' concatenated with the input image, 'II' with the shallow
            features (proposed), 'III' with the denoise block's output before the last conv, 'IV' multiplied with
            the reconstruction. Default: 'II'.
        predenoiser (dict | None): Pre-denoiser option dict (required for gradient_source 'denoised'): `type` of
            any registered arch plus its options, and `pretrained` (stage-1 checkpoint), `param_key`, `strict`.
            Its weights are saved inside GradNet's state dict under `predenoiser.`.
        init_from_predenoiser (bool): Start GradNet's own layers from the pre-denoiser's weights (an MSKResNet of
            the same size and residual), function-preserving: every weight that reads a gradient channel starts at
            zero, so before training GradNet computes exactly its pre-denoiser's output and training can only add to
            it (archs/warm_start.py). Fusion I-III only. Default: False (the paper's recipe: random initialisation).
    """

    def __init__(self,
                 num_in_ch=3,
                 num_feat=64,
                 num_modules=4,
                 num_units=4,
                 batch_norm=True,
                 reduction=16,
                 global_residual=False,
                 gradient_source='denoised',
                 fusion='II',
                 predenoiser=None,
                 init_from_predenoiser=False,
                 **unknown):
        super().__init__()
        reject_unknown_options('GradNet', unknown, GradNet.__init__)
        if num_in_ch not in (1, 3):
            raise OptionError(f'GradNet: num_in_ch must be 1 (grey) or 3 (colour), got {num_in_ch}.')
        if gradient_source not in GRADIENT_SOURCES:
            raise OptionError(f'GradNet: gradient_source must be one of {GRADIENT_SOURCES}, got {gradient_source!r}.')
        fusion = str(fusion).upper()
        if fusion not in FUSIONS:
            raise OptionError(f'GradNet: fusion must be one of {FUSIONS} (the paper\'s positions), got {fusion!r}.')
        self.num_in_ch = num_in_ch
        self.global_residual = global_residual
        self.gradient_source = gradient_source
        self.fusion = fusion if gradient_source != 'none' else None

        # Channel counts at each stage depend on where (and whether) the gradient is concatenated.
        c, f = num_in_ch, num_feat
        grad_c = 0 if gradient_source == 'none' else c
        head_in = c + (grad_c if self.fusion == 'I' else 0)
        body_ch = f + (grad_c if self.fusion == 'II' else 0)
        tail_in = body_ch + (grad_c if self.fusion == 'III' else 0)

        self.sobel = Sobel() if gradient_source != 'none' else None
        self.head = nn.Sequential(nn.Conv2d(head_in, f, 3, 1, 1, bias=False), nn.ReLU(inplace=True))
        self.body = MSKBody(body_ch, num_modules, num_units, batch_norm, reduction)
        self.tail = nn.Conv2d(tail_in, c, 3, 1, 1, bias=False)

        self.predenoiser = None
        self.predenoiser_path = None
        if gradient_source == 'denoised':
            if predenoiser is None:
                raise OptionError('GradNet: gradient_source "denoised" needs a `predenoiser` option dict, e.g. '
                                  '{type: MSKResNet, num_in_ch: 3, pretrained: <stage-1 net_g_latest.pth>}. Use '
                                  'gradient_source: noisy or none for the ablations without one.')
            # Registered as a submodule so one GradNet checkpoint restores both stages.
            self.predenoiser, self.predenoiser_path = build_predenoiser(predenoiser, num_in_ch)
            for unit in self.predenoiser.modules():
                if isinstance(unit, ResUnit):
                    unit.fold_frozen_bn = True  # frozen and run without gradients: one conv instead of conv + BN
        elif predenoiser is not None:
            raise OptionError(f'GradNet: a predenoiser is given but gradient_source is {gradient_source!r}; it would '
                              f'never run. Remove it or set gradient_source: denoised.')
        if not isinstance(init_from_predenoiser, bool):
            raise OptionError(f'GradNet: init_from_predenoiser must be true or false, got {init_from_predenoiser!r}.')
        if init_from_predenoiser:
            if gradient_source != 'denoised':
                raise OptionError(f'GradNet: init_from_predenoiser copies the pre-denoiser, but gradient_source is '
                                  f'{gradient_source!r} (no pre-denoiser). Set gradient_source: denoised or '
                                  f'init_from_predenoiser: false.')
            own = dict(
                num_feat=num_feat,
                num_modules=num_modules,
                num_units=num_units,
                batch_norm=batch_norm,
                reduction=reduction,
                global_residual=global_residual)
            check_embeddable(own, predenoiser, fusion)
            embed_predenoiser(self)

    def train(self, mode=True):
        """Switch modes but keep the frozen pre-denoiser in eval (its BatchNorm statistics never move)."""
        super().train(mode)
        if self.predenoiser is not None:
            self.predenoiser.eval()
        return self

    def own_parameters(self):
        """Trainable parameters of GradNet itself (everything except the pre-denoiser)."""
        return [p for name, p in self.named_parameters() if not name.startswith('predenoiser.')]

    @torch.no_grad()
    def gradient_map(self, x):
        """The C-channel gradient map the net is given for noisy input `x` (None when gradient_source is 'none')."""
        if self.gradient_source == 'none':
            return None
        source = x
        if self.gradient_source == 'denoised':
            source = self.predenoiser(x)
            if source.shape != x.shape:
                raise OptionError(f'GradNet: the pre-denoiser returned shape {tuple(source.shape)} for input '
                                  f'{tuple(x.shape)}; it must return an image of the input\'s shape.')
        return self.sobel(source)

    def forward(self, x):
        check_input_channels(self, x)
        grad = self.gradient_map(x)
        feat = self.head(torch.cat([x, grad], 1) if self.fusion == 'I' else x)
        if self.fusion == 'II':
            feat = torch.cat([feat, grad], 1)
        feat = self.body(feat)
        if self.fusion == 'III':
            feat = torch.cat([feat, grad], 1)
        out = self.tail(feat)
        if self.fusion == 'IV':
            out = out * grad
        return out + x if self.global_residual else out
