"""The options of torch's and timm's optimizers, written down so that checking a rule file needs no torch.

Generated from the installed torch and timm by ``python tests/test_signatures.py``; each text in
OPTIONS is an optimizer's options as :func:`lrrules.signatures.encode` writes them (what a check
reads of each default), and TORCH and TIMM give each optimizer's text by its index: ``None`` where
it takes any keyword, UNAVAILABLE where timm knows the name but it needs a package or CUDA that the
generating machine lacked. tests/test_signatures.py checks the table against the torch and timm installed.
"""

UNAVAILABLE = -1
GENERATED_WITH = {"torch": "2.14.1", "timm": "1.0.31"}
OPTIONS: list[str] = [
    'lr eps# eps_scale# clip_threshold# decay_rate# betas weight_decay# scale_parameter warmup_init '
    'min_dim_size_to_factor# caution',  # 0
    'lr eps# eps_scale# clip_threshold# decay_rate# betas=0.9,0.999 weight_decay# scale_parameter warmup_init '
    'min_dim_size_to_factor# caution',  # 1
    'lr momentum# dampening# weight_decay# nesterov eps# delta# wd_ratio# caution',  # 2
    'lr# alpha# eps# weight_decay# momentum# centered capturable foreach maximize differentiable',  # 3
    'lr# alpha# eps# weight_decay# momentum# centered decoupled_decay corrected_weight_decay lr_in_momentum '
    'caution foreach',  # 4
    'lr# beta2_decay# eps d# weight_decay# foreach maximize',  # 5
    'lr# betas=0.9,0.99 eps# weight_decay# gamma# mars_type optimize_1d lr_1d_factor# betas_1d caution',  # 6
    'lr# betas=0.9,0.99 weight_decay# caution corrected_weight_decay maximize foreach',  # 7
    'lr# betas=0.9,0.999 eps# maximize',  # 8
    'lr# betas=0.9,0.999 eps# weight_decay#',  # 9
    'lr# betas=0.9,0.999 eps# weight_decay# amsgrad caution corrected_weight_decay maximize foreach '
    'capturable clipping_threshold',  # 10
    'lr# betas=0.9,0.999 eps# weight_decay# amsgrad decoupled_decay fixed_decay rectify degenerated_to_sgd '
    'foreach',  # 11
    'lr# betas=0.9,0.999 eps# weight_decay# amsgrad foreach maximize capturable differentiable fused '
    'decoupled_weight_decay',  # 12
    'lr# betas=0.9,0.999 eps# weight_decay# amsgrad maximize foreach capturable differentiable fused',  # 13
    'lr# betas=0.9,0.999 eps# weight_decay# caution corrected_weight_decay foreach',  # 14
    'lr# betas=0.9,0.999 eps# weight_decay# caution corrected_weight_decay maximize foreach capturable '
    'clipping_threshold',  # 15
    'lr# betas=0.9,0.999 eps# weight_decay# decoupled_weight_decay foreach maximize capturable differentiable',  # 16
    'lr# betas=0.9,0.999 eps# weight_decay# delta# wd_ratio# nesterov caution',  # 17
    'lr# betas=0.9,0.999 eps# weight_decay# foreach maximize differentiable capturable',  # 18
    'lr# betas=0.9,0.999 eps# weight_decay# hessian_power# update_each# n_samples# avg_conv_kernel',  # 19
    'lr# betas=0.9,0.999 eps# weight_decay# momentum_decay# decoupled_weight_decay foreach maximize '
    'capturable differentiable',  # 20
    'lr# betas=0.9,0.999 eps# weight_decay# schedule_decay#',  # 21
    'lr# betas=0.9,0.9999 eps# clip_exp# weight_decay# decoupled corrected_weight_decay caution foreach '
    'maximize capturable differentiable',  # 22
    'lr# betas=0.95,0.98 eps# weight_decay# grad_averaging amsgrad decoupled_decay corrected_weight_decay',  # 23
    'lr# betas=0.98,0.92,0.99 eps# weight_decay# no_prox caution foreach',  # 24
    'lr# bias_correction betas=0.9,0.999 eps# weight_decay# grad_averaging max_grad_norm# trust_clip '
    'always_adapt caution decoupled_decay corrected_weight_decay foreach',  # 25
    'lr# etas=0.5,1.2 step_sizes=1e-06,50 capturable foreach maximize differentiable',  # 26
    'lr# lambd# alpha# t0# weight_decay# foreach maximize differentiable capturable',  # 27
    'lr# lr_decay# weight_decay# initial_accumulator_value# eps# foreach maximize differentiable fused',  # 28
    'lr# max_iter# max_eval tolerance_grad# tolerance_change# history_size# line_search_fn maximize',  # 29
    'lr# min_dim_size_to_factor# decay_rate# decay_offset# beta2_cap# momentum# momentum_dtype eps '
    'weight_decay# clipping_threshold unscaled_wd caution corrected_weight_decay',  # 30
    'lr# momentum# dampening# weight_decay# nesterov caution corrected_weight_decay maximize foreach '
    'differentiable',  # 31
    'lr# momentum# dampening# weight_decay# nesterov maximize foreach differentiable fused',  # 32
    'lr# momentum# dampening# weight_decay# nesterov trust_coeff# eps# trust_clip always_adapt foreach',  # 33
    'lr# momentum# weight_decay# eps# decoupled_decay',  # 34
    'lr# momentum# weight_decay# preconditioner_update_probability max_size_triangular# min_ndim_triangular# '
    'memory_save_mode momentum_into_precond_update precond_lr# precond_init_scale# mu_dtype precond_dtype '
    'decoupled_decay corrected_weight_decay flatten flatten_start_dim# flatten_end_dim# '
    'stochastic_weight_decay deterministic',  # 35
    'lr# rho# eps# weight_decay# foreach capturable maximize differentiable',  # 36
    'lr# weight_decay# momentum# nesterov ns_coefficients=3.4445,-4.775,2.0315 eps# ns_steps# adjust_lr_fn',  # 37
    'lr# weight_decay# momentum# nesterov ns_steps# ns_coefficients eps# safety_factor# adjust_lr_fn '
    'conv_mode normalize_spatial adamw_lr fallback_lr_scale# betas=0.9,0.95 algo scale_eps capturable verbose',  # 38
]
TORCH: dict[str, int | None] = {
    'ASGD': 27, 'Adadelta': 36, 'Adafactor': 5, 'Adagrad': 28, 'Adam': 12, 'AdamW': 13, 'Adamax': 18, 'LBFGS': 29,
    'Muon': 37, 'NAdam': 20, 'RAdam': 16, 'RMSprop': 3, 'Rprop': 26, 'SGD': 32, 'SparseAdam': 8
}
TIMM: dict[str, int | None] = {
    'adabelief': 11, 'adadelta': 36, 'adafactor': 0, 'adafactorbv': 30, 'adafactorbvc': 30, 'adagrad': 28,
    'adahessian': 19, 'adam': 12, 'adamax': 18, 'adamc': 10, 'adamp': 17, 'adamuon': 38, 'adamw': 13, 'adamwlegacy':
    10, 'adan': 24, 'adanw': 24, 'adopt': 22, 'adoptc': 22, 'adoptw': 22, 'bnbadam': -1, 'bnbadam8bit': -1,
    'bnbadamw': -1, 'bnbadamw8bit': -1, 'bnbademamix': -1, 'bnbademamix8bit': -1, 'bnblion': -1, 'bnblion8bit': -1,
    'bnbsgd': -1, 'bnbsgd8bit': -1, 'cadafactor': 1, 'cadafactorbv': 30, 'cadafactorbvc': 30, 'cadamc': 10,
    'cadamp': 17, 'cadamw': 10, 'cadan': 24, 'cadanw': 24, 'cadopt': 22, 'cadoptc': 22, 'cadoptw': 22, 'clamb': 25,
    'clambw': 25, 'claprop': 14, 'clion': 7, 'clionc': 7, 'cmars': 6, 'cnadamc': 15, 'cnadamw': 15, 'crmsproptf': 4,
    'csgdc': 31, 'csgdp': 2, 'csgdw': 31, 'fusedadam': -1, 'fusedadamw': -1, 'fusedlamb': -1, 'fusednovograd': -1,
    'fusedsgd': -1, 'kron': 35, 'kronc': 35, 'kronw': 35, 'lamb': 25, 'lambc': 25, 'lambcd': 25, 'lambcw': 25,
    'lambw': 25, 'laprop': 14, 'lapropc': 14, 'larc': 33, 'lars': 33, 'lion': 7, 'lionc': 7, 'madgrad': 34,
    'madgradw': 34, 'mars': 6, 'momentum': 32, 'muon': 38, 'nadam': 20, 'nadamc': 15, 'nadamlegacy': 21, 'nadamuon':
    38, 'nadamw': 15, 'nesterov': 32, 'nesterovw': 31, 'nlarc': 33, 'nlars': 33, 'nmuon': 38, 'novograd': 23,
    'novogradc': 23, 'novogradw': 23, 'radabelief': 11, 'radam': 16, 'radamlegacy': 9, 'radamw': 16, 'rmsprop': 3,
    'rmsproptf': 4, 'rmsproptfc': 4, 'rmsproptfw': 4, 'sgd': 32, 'sgdc': 31, 'sgdp': 2, 'sgdw': 31
}
