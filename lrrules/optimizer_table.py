"""The options of torch's and timm's optimizers, written down so that checking a rule file needs no torch.

Generated from the installed torch and timm by ``python -m lrrules.signatures``; each entry maps an
option to its default (``...`` where the default is not plain data, ``"<required>"`` where there is
none). ``None``: the optimizer takes any keyword. ``"unavailable"``: timm knows the name but it needs
a package or CUDA that the generating machine lacked, so its options are not known here.
tests/test_signatures.py checks the table against the torch and timm installed.
"""

from __future__ import annotations

from typing import Any

#: The versions the table was generated from.
GENERATED_WITH = {"torch": "2.14.1", "timm": "1.0.31"}
TORCH: dict[str, dict[str, Any] | None] = {
    'ASGD': {'alpha': 0.75, 'capturable': False, 'differentiable': False, 'foreach': None, 'lambd': 0.0001, 'lr':
        0.01, 'maximize': False, 't0': 1000000.0, 'weight_decay': 0},
    'Adadelta': {'capturable': False, 'differentiable': False, 'eps': 1e-06, 'foreach': None, 'lr': 1.0, 'maximize':
        False, 'rho': 0.9, 'weight_decay': 0},
    'Adafactor': {'beta2_decay': -0.8, 'd': 1.0, 'eps': ..., 'foreach': None, 'lr': 0.01, 'maximize': False,
        'weight_decay': 0.0},
    'Adagrad': {'differentiable': False, 'eps': 1e-10, 'foreach': None, 'fused': None, 'initial_accumulator_value':
        0, 'lr': 0.01, 'lr_decay': 0, 'maximize': False, 'weight_decay': 0},
    'Adam': {'amsgrad': False, 'betas': (0.9, 0.999), 'capturable': False, 'decoupled_weight_decay': False,
        'differentiable': False, 'eps': 1e-08, 'foreach': None, 'fused': None, 'lr': 0.001, 'maximize': False,
        'weight_decay': 0},
    'AdamW': {'amsgrad': False, 'betas': (0.9, 0.999), 'capturable': False, 'differentiable': False, 'eps': 1e-08,
        'foreach': None, 'fused': None, 'lr': 0.001, 'maximize': False, 'weight_decay': 0.01},
    'Adamax': {'betas': (0.9, 0.999), 'capturable': False, 'differentiable': False, 'eps': 1e-08, 'foreach': None,
        'lr': 0.002, 'maximize': False, 'weight_decay': 0},
    'LBFGS': {'history_size': 100, 'line_search_fn': None, 'lr': 1, 'max_eval': None, 'max_iter': 20, 'maximize':
        False, 'tolerance_change': 1e-09, 'tolerance_grad': 1e-07},
    'Muon': {'adjust_lr_fn': None, 'eps': 1e-07, 'lr': 0.001, 'momentum': 0.95, 'nesterov': True, 'ns_coefficients':
        (3.4445, -4.775, 2.0315), 'ns_steps': 5, 'weight_decay': 0.1},
    'NAdam': {'betas': (0.9, 0.999), 'capturable': False, 'decoupled_weight_decay': False, 'differentiable': False,
        'eps': 1e-08, 'foreach': None, 'lr': 0.002, 'maximize': False, 'momentum_decay': 0.004, 'weight_decay': 0},
    'RAdam': {'betas': (0.9, 0.999), 'capturable': False, 'decoupled_weight_decay': False, 'differentiable': False,
        'eps': 1e-08, 'foreach': None, 'lr': 0.001, 'maximize': False, 'weight_decay': 0},
    'RMSprop': {'alpha': 0.99, 'capturable': False, 'centered': False, 'differentiable': False, 'eps': 1e-08,
        'foreach': None, 'lr': 0.01, 'maximize': False, 'momentum': 0, 'weight_decay': 0},
    'Rprop': {'capturable': False, 'differentiable': False, 'etas': (0.5, 1.2), 'foreach': None, 'lr': 0.01,
        'maximize': False, 'step_sizes': (1e-06, 50)},
    'SGD': {'dampening': 0, 'differentiable': False, 'foreach': None, 'fused': None, 'lr': 0.001, 'maximize': False,
        'momentum': 0, 'nesterov': False, 'weight_decay': 0},
    'SparseAdam': {'betas': (0.9, 0.999), 'eps': 1e-08, 'lr': 0.001, 'maximize': False},
}
TIMM: dict[str, dict[str, Any] | str | None] = {
    'adabelief': {'amsgrad': False, 'betas': (0.9, 0.999), 'decoupled_decay': True, 'degenerated_to_sgd': True,
        'eps': 1e-16, 'fixed_decay': False, 'foreach': None, 'lr': 0.001, 'rectify': False, 'weight_decay': 0},
    'adadelta': {'capturable': False, 'differentiable': False, 'eps': 1e-06, 'foreach': None, 'lr': 1.0, 'maximize':
        False, 'rho': 0.9, 'weight_decay': 0},
    'adafactor': {'betas': None, 'caution': False, 'clip_threshold': 1.0, 'decay_rate': -0.8, 'eps': 1e-30,
        'eps_scale': 0.001, 'lr': None, 'min_dim_size_to_factor': 16, 'scale_parameter': True, 'warmup_init': False,
        'weight_decay': 0.0},
    'adafactorbv': {'beta2_cap': 0.999, 'caution': False, 'clipping_threshold': None, 'corrected_weight_decay':
        False, 'decay_offset': 0, 'decay_rate': 0.8, 'eps': None, 'lr': 1.0, 'min_dim_size_to_factor': 16,
        'momentum': 0.9, 'momentum_dtype': ..., 'unscaled_wd': False, 'weight_decay': 0.0},
    'adafactorbvc': {'beta2_cap': 0.999, 'caution': False, 'clipping_threshold': None, 'corrected_weight_decay':
        True, 'decay_offset': 0, 'decay_rate': 0.8, 'eps': None, 'lr': 1.0, 'min_dim_size_to_factor': 16,
        'momentum': 0.9, 'momentum_dtype': ..., 'unscaled_wd': False, 'weight_decay': 0.0},
    'adagrad': {'differentiable': False, 'eps': 1e-08, 'foreach': None, 'fused': None, 'initial_accumulator_value':
        0, 'lr': 0.01, 'lr_decay': 0, 'maximize': False, 'weight_decay': 0},
    'adahessian': {'avg_conv_kernel': False, 'betas': (0.9, 0.999), 'eps': 1e-08, 'hessian_power': 1.0, 'lr': 0.1,
        'n_samples': 1, 'update_each': 1, 'weight_decay': 0.0},
    'adam': {'amsgrad': False, 'betas': (0.9, 0.999), 'capturable': False, 'decoupled_weight_decay': False,
        'differentiable': False, 'eps': 1e-08, 'foreach': None, 'fused': None, 'lr': 0.001, 'maximize': False,
        'weight_decay': 0},
    'adamax': {'betas': (0.9, 0.999), 'capturable': False, 'differentiable': False, 'eps': 1e-08, 'foreach': None,
        'lr': 0.002, 'maximize': False, 'weight_decay': 0},
    'adamc': {'amsgrad': False, 'betas': (0.9, 0.999), 'capturable': False, 'caution': False, 'clipping_threshold':
        None, 'corrected_weight_decay': True, 'eps': 1e-08, 'foreach': None, 'lr': 0.001, 'maximize': False,
        'weight_decay': 0.01},
    'adamp': {'betas': (0.9, 0.999), 'caution': False, 'delta': 0.1, 'eps': 1e-08, 'lr': 0.001, 'nesterov': True,
        'wd_ratio': 0.01, 'weight_decay': 0},
    'adamuon': {'adamw_lr': None, 'adjust_lr_fn': 'match_rms_adamw', 'algo': 'adamuon', 'betas': (0.9, 0.95),
        'capturable': False, 'conv_mode': 'flatten', 'eps': 1e-07, 'fallback_lr_scale': 1.0, 'lr': 0.02, 'momentum':
        0.95, 'nesterov': False, 'normalize_spatial': True, 'ns_coefficients': 'quintic', 'ns_steps': 5,
        'safety_factor': 1.0, 'scale_eps': False, 'verbose': False, 'weight_decay': 0},
    'adamw': {'amsgrad': False, 'betas': (0.9, 0.999), 'capturable': False, 'differentiable': False, 'eps': 1e-08,
        'foreach': None, 'fused': None, 'lr': 0.001, 'maximize': False, 'weight_decay': 0.01},
    'adamwlegacy': {'amsgrad': False, 'betas': (0.9, 0.999), 'capturable': False, 'caution': False,
        'clipping_threshold': None, 'corrected_weight_decay': False, 'eps': 1e-08, 'foreach': None, 'lr': 0.001,
        'maximize': False, 'weight_decay': 0.01},
    'adan': {'betas': (0.98, 0.92, 0.99), 'caution': False, 'eps': 1e-08, 'foreach': None, 'lr': 0.001, 'no_prox':
        False, 'weight_decay': 0.0},
    'adanw': {'betas': (0.98, 0.92, 0.99), 'caution': False, 'eps': 1e-08, 'foreach': None, 'lr': 0.001, 'no_prox':
        True, 'weight_decay': 0.0},
    'adopt': {'betas': (0.9, 0.9999), 'capturable': False, 'caution': False, 'clip_exp': 0.333,
        'corrected_weight_decay': False, 'decoupled': False, 'differentiable': False, 'eps': 1e-06, 'foreach': None,
        'lr': 0.001, 'maximize': False, 'weight_decay': 0.0},
    'adoptc': {'betas': (0.9, 0.9999), 'capturable': False, 'caution': False, 'clip_exp': 0.333,
        'corrected_weight_decay': True, 'decoupled': True, 'differentiable': False, 'eps': 1e-06, 'foreach': None,
        'lr': 0.001, 'maximize': False, 'weight_decay': 0.0},
    'adoptw': {'betas': (0.9, 0.9999), 'capturable': False, 'caution': False, 'clip_exp': 0.333,
        'corrected_weight_decay': False, 'decoupled': True, 'differentiable': False, 'eps': 1e-06, 'foreach': None,
        'lr': 0.001, 'maximize': False, 'weight_decay': 0.0},
    'bnbadam': 'unavailable',
    'bnbadam8bit': 'unavailable',
    'bnbadamw': 'unavailable',
    'bnbadamw8bit': 'unavailable',
    'bnbademamix': 'unavailable',
    'bnbademamix8bit': 'unavailable',
    'bnblion': 'unavailable',
    'bnblion8bit': 'unavailable',
    'bnbsgd': 'unavailable',
    'bnbsgd8bit': 'unavailable',
    'cadafactor': {'betas': (0.9, 0.999), 'caution': True, 'clip_threshold': 1.0, 'decay_rate': -0.8, 'eps': 1e-30,
        'eps_scale': 0.001, 'lr': None, 'min_dim_size_to_factor': 16, 'scale_parameter': True, 'warmup_init': False,
        'weight_decay': 0.0},
    'cadafactorbv': {'beta2_cap': 0.999, 'caution': True, 'clipping_threshold': None, 'corrected_weight_decay':
        False, 'decay_offset': 0, 'decay_rate': 0.8, 'eps': None, 'lr': 1.0, 'min_dim_size_to_factor': 16,
        'momentum': 0.9, 'momentum_dtype': ..., 'unscaled_wd': False, 'weight_decay': 0.0},
    'cadafactorbvc': {'beta2_cap': 0.999, 'caution': True, 'clipping_threshold': None, 'corrected_weight_decay':
        True, 'decay_offset': 0, 'decay_rate': 0.8, 'eps': None, 'lr': 1.0, 'min_dim_size_to_factor': 16,
        'momentum': 0.9, 'momentum_dtype': ..., 'unscaled_wd': False, 'weight_decay': 0.0},
    'cadamc': {'amsgrad': False, 'betas': (0.9, 0.999), 'capturable': False, 'caution': True, 'clipping_threshold':
        None, 'corrected_weight_decay': True, 'eps': 1e-08, 'foreach': None, 'lr': 0.001, 'maximize': False,
        'weight_decay': 0.01},
    'cadamp': {'betas': (0.9, 0.999), 'caution': True, 'delta': 0.1, 'eps': 1e-08, 'lr': 0.001, 'nesterov': True,
        'wd_ratio': 0.01, 'weight_decay': 0},
    'cadamw': {'amsgrad': False, 'betas': (0.9, 0.999), 'capturable': False, 'caution': True, 'clipping_threshold':
        None, 'corrected_weight_decay': False, 'eps': 1e-08, 'foreach': None, 'lr': 0.001, 'maximize': False,
        'weight_decay': 0.01},
    'cadan': {'betas': (0.98, 0.92, 0.99), 'caution': True, 'eps': 1e-08, 'foreach': None, 'lr': 0.001, 'no_prox':
        False, 'weight_decay': 0.0},
    'cadanw': {'betas': (0.98, 0.92, 0.99), 'caution': True, 'eps': 1e-08, 'foreach': None, 'lr': 0.001, 'no_prox':
        True, 'weight_decay': 0.0},
    'cadopt': {'betas': (0.9, 0.9999), 'capturable': False, 'caution': True, 'clip_exp': 0.333,
        'corrected_weight_decay': False, 'decoupled': False, 'differentiable': False, 'eps': 1e-06, 'foreach': None,
        'lr': 0.001, 'maximize': False, 'weight_decay': 0.0},
    'cadoptc': {'betas': (0.9, 0.9999), 'capturable': False, 'caution': True, 'clip_exp': 0.333,
        'corrected_weight_decay': True, 'decoupled': True, 'differentiable': False, 'eps': 1e-06, 'foreach': None,
        'lr': 0.001, 'maximize': False, 'weight_decay': 0.0},
    'cadoptw': {'betas': (0.9, 0.9999), 'capturable': False, 'caution': True, 'clip_exp': 0.333,
        'corrected_weight_decay': False, 'decoupled': True, 'differentiable': False, 'eps': 1e-06, 'foreach': None,
        'lr': 0.001, 'maximize': False, 'weight_decay': 0.0},
    'clamb': {'always_adapt': False, 'betas': (0.9, 0.999), 'bias_correction': True, 'caution': True,
        'corrected_weight_decay': False, 'decoupled_decay': False, 'eps': 1e-06, 'foreach': None, 'grad_averaging':
        True, 'lr': 0.001, 'max_grad_norm': 1.0, 'trust_clip': False, 'weight_decay': 0.01},
    'clambw': {'always_adapt': False, 'betas': (0.9, 0.999), 'bias_correction': True, 'caution': True,
        'corrected_weight_decay': False, 'decoupled_decay': True, 'eps': 1e-06, 'foreach': None, 'grad_averaging':
        True, 'lr': 0.001, 'max_grad_norm': 1.0, 'trust_clip': False, 'weight_decay': 0.01},
    'claprop': {'betas': (0.9, 0.999), 'caution': True, 'corrected_weight_decay': False, 'eps': 1e-15, 'foreach':
        None, 'lr': 0.0004, 'weight_decay': 0.0},
    'clion': {'betas': (0.9, 0.99), 'caution': True, 'corrected_weight_decay': False, 'foreach': None, 'lr': 0.0001,
        'maximize': False, 'weight_decay': 0.0},
    'clionc': {'betas': (0.9, 0.99), 'caution': True, 'corrected_weight_decay': True, 'foreach': None, 'lr': 0.0001,
        'maximize': False, 'weight_decay': 0.0},
    'cmars': {'betas': (0.9, 0.99), 'betas_1d': None, 'caution': True, 'eps': 1e-08, 'gamma': 0.025, 'lr': 0.003,
        'lr_1d_factor': 1.0, 'mars_type': 'adamw', 'optimize_1d': False, 'weight_decay': 0.0},
    'cnadamc': {'betas': (0.9, 0.999), 'capturable': False, 'caution': True, 'clipping_threshold': None,
        'corrected_weight_decay': True, 'eps': 1e-08, 'foreach': None, 'lr': 0.001, 'maximize': False,
        'weight_decay': 0.01},
    'cnadamw': {'betas': (0.9, 0.999), 'capturable': False, 'caution': True, 'clipping_threshold': None,
        'corrected_weight_decay': False, 'eps': 1e-08, 'foreach': None, 'lr': 0.001, 'maximize': False,
        'weight_decay': 0.01},
    'crmsproptf': {'alpha': 0.9, 'caution': True, 'centered': False, 'corrected_weight_decay': False,
        'decoupled_decay': False, 'eps': 1e-10, 'foreach': None, 'lr': 0.01, 'lr_in_momentum': True, 'momentum':
        0.0, 'weight_decay': 0},
    'csgdc': {'caution': True, 'corrected_weight_decay': True, 'dampening': 0.0, 'differentiable': False, 'foreach':
        None, 'lr': 0.001, 'maximize': False, 'momentum': 0.0, 'nesterov': True, 'weight_decay': 0.0},
    'csgdp': {'caution': True, 'dampening': 0, 'delta': 0.1, 'eps': 1e-08, 'lr': ..., 'momentum': 0, 'nesterov':
        True, 'wd_ratio': 0.1, 'weight_decay': 0},
    'csgdw': {'caution': True, 'corrected_weight_decay': False, 'dampening': 0.0, 'differentiable': False,
        'foreach': None, 'lr': 0.001, 'maximize': False, 'momentum': 0.0, 'nesterov': True, 'weight_decay': 0.0},
    'fusedadam': 'unavailable',
    'fusedadamw': 'unavailable',
    'fusedlamb': 'unavailable',
    'fusednovograd': 'unavailable',
    'fusedsgd': 'unavailable',
    'kron': {'corrected_weight_decay': False, 'decoupled_decay': False, 'deterministic': False, 'flatten': False,
        'flatten_end_dim': -1, 'flatten_start_dim': 2, 'lr': 0.001, 'max_size_triangular': 2048, 'memory_save_mode':
        None, 'min_ndim_triangular': 2, 'momentum': 0.9, 'momentum_into_precond_update': True, 'mu_dtype': None,
        'precond_dtype': None, 'precond_init_scale': 1.0, 'precond_lr': 0.1, 'preconditioner_update_probability':
        None, 'stochastic_weight_decay': False, 'weight_decay': 0.0},
    'kronc': {'corrected_weight_decay': True, 'decoupled_decay': True, 'deterministic': False, 'flatten': False,
        'flatten_end_dim': -1, 'flatten_start_dim': 2, 'lr': 0.001, 'max_size_triangular': 2048, 'memory_save_mode':
        None, 'min_ndim_triangular': 2, 'momentum': 0.9, 'momentum_into_precond_update': True, 'mu_dtype': None,
        'precond_dtype': None, 'precond_init_scale': 1.0, 'precond_lr': 0.1, 'preconditioner_update_probability':
        None, 'stochastic_weight_decay': False, 'weight_decay': 0.0},
    'kronw': {'corrected_weight_decay': False, 'decoupled_decay': True, 'deterministic': False, 'flatten': False,
        'flatten_end_dim': -1, 'flatten_start_dim': 2, 'lr': 0.001, 'max_size_triangular': 2048, 'memory_save_mode':
        None, 'min_ndim_triangular': 2, 'momentum': 0.9, 'momentum_into_precond_update': True, 'mu_dtype': None,
        'precond_dtype': None, 'precond_init_scale': 1.0, 'precond_lr': 0.1, 'preconditioner_update_probability':
        None, 'stochastic_weight_decay': False, 'weight_decay': 0.0},
    'lamb': {'always_adapt': False, 'betas': (0.9, 0.999), 'bias_correction': True, 'caution': False,
        'corrected_weight_decay': False, 'decoupled_decay': False, 'eps': 1e-06, 'foreach': None, 'grad_averaging':
        True, 'lr': 0.001, 'max_grad_norm': 1.0, 'trust_clip': False, 'weight_decay': 0.01},
    'lambc': {'always_adapt': False, 'betas': (0.9, 0.999), 'bias_correction': True, 'caution': False,
        'corrected_weight_decay': False, 'decoupled_decay': False, 'eps': 1e-06, 'foreach': None, 'grad_averaging':
        True, 'lr': 0.001, 'max_grad_norm': 1.0, 'trust_clip': True, 'weight_decay': 0.01},
    'lambcd': {'always_adapt': False, 'betas': (0.9, 0.999), 'bias_correction': True, 'caution': False,
        'corrected_weight_decay': True, 'decoupled_decay': True, 'eps': 1e-06, 'foreach': None, 'grad_averaging':
        True, 'lr': 0.001, 'max_grad_norm': 1.0, 'trust_clip': False, 'weight_decay': 0.01},
    'lambcw': {'always_adapt': False, 'betas': (0.9, 0.999), 'bias_correction': True, 'caution': False,
        'corrected_weight_decay': False, 'decoupled_decay': True, 'eps': 1e-06, 'foreach': None, 'grad_averaging':
        True, 'lr': 0.001, 'max_grad_norm': 1.0, 'trust_clip': True, 'weight_decay': 0.01},
    'lambw': {'always_adapt': False, 'betas': (0.9, 0.999), 'bias_correction': True, 'caution': False,
        'corrected_weight_decay': False, 'decoupled_decay': True, 'eps': 1e-06, 'foreach': None, 'grad_averaging':
        True, 'lr': 0.001, 'max_grad_norm': 1.0, 'trust_clip': False, 'weight_decay': 0.01},
    'laprop': {'betas': (0.9, 0.999), 'caution': False, 'corrected_weight_decay': False, 'eps': 1e-15, 'foreach':
        None, 'lr': 0.0004, 'weight_decay': 0.0},
    'lapropc': {'betas': (0.9, 0.999), 'caution': False, 'corrected_weight_decay': True, 'eps': 1e-15, 'foreach':
        None, 'lr': 0.0004, 'weight_decay': 0.0},
    'larc': {'always_adapt': False, 'dampening': 0, 'eps': 1e-08, 'foreach': None, 'lr': 1.0, 'momentum': 0,
        'nesterov': False, 'trust_clip': True, 'trust_coeff': 0.001, 'weight_decay': 0},
    'lars': {'always_adapt': False, 'dampening': 0, 'eps': 1e-08, 'foreach': None, 'lr': 1.0, 'momentum': 0,
        'nesterov': False, 'trust_clip': False, 'trust_coeff': 0.001, 'weight_decay': 0},
    'lion': {'betas': (0.9, 0.99), 'caution': False, 'corrected_weight_decay': False, 'foreach': None, 'lr': 0.0001,
        'maximize': False, 'weight_decay': 0.0},
    'lionc': {'betas': (0.9, 0.99), 'caution': False, 'corrected_weight_decay': True, 'foreach': None, 'lr': 0.0001,
        'maximize': False, 'weight_decay': 0.0},
    'madgrad': {'decoupled_decay': False, 'eps': 1e-06, 'lr': 0.01, 'momentum': 0.9, 'weight_decay': 0},
    'madgradw': {'decoupled_decay': True, 'eps': 1e-06, 'lr': 0.01, 'momentum': 0.9, 'weight_decay': 0},
    'mars': {'betas': (0.9, 0.99), 'betas_1d': None, 'caution': False, 'eps': 1e-08, 'gamma': 0.025, 'lr': 0.003,
        'lr_1d_factor': 1.0, 'mars_type': 'adamw', 'optimize_1d': False, 'weight_decay': 0.0},
    'momentum': {'dampening': 0, 'differentiable': False, 'foreach': None, 'fused': None, 'lr': 0.001, 'maximize':
        False, 'momentum': 0, 'nesterov': False, 'weight_decay': 0},
    'muon': {'adamw_lr': None, 'adjust_lr_fn': 'match_rms_adamw', 'algo': 'muon', 'betas': (0.9, 0.95),
        'capturable': False, 'conv_mode': 'flatten', 'eps': 1e-07, 'fallback_lr_scale': 1.0, 'lr': 0.02, 'momentum':
        0.95, 'nesterov': False, 'normalize_spatial': True, 'ns_coefficients': 'quintic', 'ns_steps': 5,
        'safety_factor': 1.0, 'scale_eps': False, 'verbose': False, 'weight_decay': 0},
    'nadam': {'betas': (0.9, 0.999), 'capturable': False, 'decoupled_weight_decay': False, 'differentiable': False,
        'eps': 1e-08, 'foreach': None, 'lr': 0.002, 'maximize': False, 'momentum_decay': 0.004, 'weight_decay': 0},
    'nadamc': {'betas': (0.9, 0.999), 'capturable': False, 'caution': False, 'clipping_threshold': None,
        'corrected_weight_decay': True, 'eps': 1e-08, 'foreach': None, 'lr': 0.001, 'maximize': False,
        'weight_decay': 0.01},
    'nadamlegacy': {'betas': (0.9, 0.999), 'eps': 1e-08, 'lr': 0.002, 'schedule_decay': 0.004, 'weight_decay': 0},
    'nadamuon': {'adamw_lr': None, 'adjust_lr_fn': 'match_rms_adamw', 'algo': 'adamuon', 'betas': (0.9, 0.95),
        'capturable': False, 'conv_mode': 'flatten', 'eps': 1e-07, 'fallback_lr_scale': 1.0, 'lr': 0.02, 'momentum':
        0.95, 'nesterov': True, 'normalize_spatial': True, 'ns_coefficients': 'quintic', 'ns_steps': 5,
        'safety_factor': 1.0, 'scale_eps': False, 'verbose': False, 'weight_decay': 0},
    'nadamw': {'betas': (0.9, 0.999), 'capturable': False, 'caution': False, 'clipping_threshold': None,
        'corrected_weight_decay': False, 'eps': 1e-08, 'foreach': None, 'lr': 0.001, 'maximize': False,
        'weight_decay': 0.01},
    'nesterov': {'dampening': 0, 'differentiable': False, 'foreach': None, 'fused': None, 'lr': 0.001, 'maximize':
        False, 'momentum': 0, 'nesterov': True, 'weight_decay': 0},
    'nesterovw': {'caution': False, 'corrected_weight_decay': False, 'dampening': 0.0, 'differentiable': False,
        'foreach': None, 'lr': 0.001, 'maximize': False, 'momentum': 0.0, 'nesterov': True, 'weight_decay': 0.0},
    'nlarc': {'always_adapt': False, 'dampening': 0, 'eps': 1e-08, 'foreach': None, 'lr': 1.0, 'momentum': 0,
        'nesterov': True, 'trust_clip': True, 'trust_coeff': 0.001, 'weight_decay': 0},
    'nlars': {'always_adapt': False, 'dampening': 0, 'eps': 1e-08, 'foreach': None, 'lr': 1.0, 'momentum': 0,
        'nesterov': True, 'trust_clip': False, 'trust_coeff': 0.001, 'weight_decay': 0},
    'nmuon': {'adamw_lr': None, 'adjust_lr_fn': 'match_rms_adamw', 'algo': 'muon', 'betas': (0.9, 0.95),
        'capturable': False, 'conv_mode': 'flatten', 'eps': 1e-07, 'fallback_lr_scale': 1.0, 'lr': 0.02, 'momentum':
        0.95, 'nesterov': True, 'normalize_spatial': True, 'ns_coefficients': 'quintic', 'ns_steps': 5,
        'safety_factor': 1.0, 'scale_eps': False, 'verbose': False, 'weight_decay': 0},
    'novograd': {'amsgrad': False, 'betas': (0.95, 0.98), 'corrected_weight_decay': False, 'decoupled_decay': False,
        'eps': 1e-08, 'grad_averaging': False, 'lr': 0.001, 'weight_decay': 0},
    'novogradc': {'amsgrad': False, 'betas': (0.95, 0.98), 'corrected_weight_decay': True, 'decoupled_decay': True,
        'eps': 1e-08, 'grad_averaging': False, 'lr': 0.001, 'weight_decay': 0},
    'novogradw': {'amsgrad': False, 'betas': (0.95, 0.98), 'corrected_weight_decay': False, 'decoupled_decay': True,
        'eps': 1e-08, 'grad_averaging': False, 'lr': 0.001, 'weight_decay': 0},
    'radabelief': {'amsgrad': False, 'betas': (0.9, 0.999), 'decoupled_decay': True, 'degenerated_to_sgd': True,
        'eps': 1e-16, 'fixed_decay': False, 'foreach': None, 'lr': 0.001, 'rectify': True, 'weight_decay': 0},
    'radam': {'betas': (0.9, 0.999), 'capturable': False, 'decoupled_weight_decay': False, 'differentiable': False,
        'eps': 1e-08, 'foreach': None, 'lr': 0.001, 'maximize': False, 'weight_decay': 0},
    'radamlegacy': {'betas': (0.9, 0.999), 'eps': 1e-08, 'lr': 0.001, 'weight_decay': 0},
    'radamw': {'betas': (0.9, 0.999), 'capturable': False, 'decoupled_weight_decay': True, 'differentiable': False,
        'eps': 1e-08, 'foreach': None, 'lr': 0.001, 'maximize': False, 'weight_decay': 0},
    'rmsprop': {'alpha': 0.9, 'capturable': False, 'centered': False, 'differentiable': False, 'eps': 1e-08,
        'foreach': None, 'lr': 0.01, 'maximize': False, 'momentum': 0, 'weight_decay': 0},
    'rmsproptf': {'alpha': 0.9, 'caution': False, 'centered': False, 'corrected_weight_decay': False,
        'decoupled_decay': False, 'eps': 1e-10, 'foreach': None, 'lr': 0.01, 'lr_in_momentum': True, 'momentum':
        0.0, 'weight_decay': 0},
    'rmsproptfc': {'alpha': 0.9, 'caution': False, 'centered': False, 'corrected_weight_decay': True,
        'decoupled_decay': True, 'eps': 1e-10, 'foreach': None, 'lr': 0.01, 'lr_in_momentum': True, 'momentum': 0.0,
        'weight_decay': 0},
    'rmsproptfw': {'alpha': 0.9, 'caution': False, 'centered': False, 'corrected_weight_decay': False,
        'decoupled_decay': True, 'eps': 1e-10, 'foreach': None, 'lr': 0.01, 'lr_in_momentum': True, 'momentum': 0.0,
        'weight_decay': 0},
    'sgd': {'dampening': 0, 'differentiable': False, 'foreach': None, 'fused': None, 'lr': 0.001, 'maximize': False,
        'momentum': 0, 'nesterov': True, 'weight_decay': 0},
    'sgdc': {'caution': False, 'corrected_weight_decay': True, 'dampening': 0.0, 'differentiable': False, 'foreach':
        None, 'lr': 0.001, 'maximize': False, 'momentum': 0.0, 'nesterov': True, 'weight_decay': 0.0},
    'sgdp': {'caution': False, 'dampening': 0, 'delta': 0.1, 'eps': 1e-08, 'lr': ..., 'momentum': 0, 'nesterov':
        True, 'wd_ratio': 0.1, 'weight_decay': 0},
    'sgdw': {'caution': False, 'corrected_weight_decay': False, 'dampening': 0.0, 'differentiable': False,
        'foreach': None, 'lr': 0.001, 'maximize': False, 'momentum': 0.0, 'nesterov': True, 'weight_decay': 0.0},
}
