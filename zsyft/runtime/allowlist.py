"""The aten ops a worker will run, named explicitly; everything else is refused before it runs.

An op on the wire is an overload name such as "add.Tensor". It runs only if its packet ("add")
is listed below. The in-place variant of a listed op ("add_") is allowed too, because it only
writes into an object of the same command, and so is its copying twin ("diagonal_copy" for
"diagonal", which torch's decompositions use); `out=` overloads are never allowed. Nothing here
reads or writes files, touches RNG state, reflects on Python objects or calls back into code:
such ops (`save`, `load`, `from_file`, `set_rng_state`, `manual_seed`, ...) are simply absent
and therefore refused by name.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from zsyft.errors import OpNotAllowedError

POINTWISE = """
abs absolute acos acosh add addcdiv addcmul angle asin asinh atan atan2 atanh bitwise_and
bitwise_not bitwise_or bitwise_xor bitwise_left_shift bitwise_right_shift __and__ __or__ __xor__
__lshift__ __rshift__ __ilshift__ __irshift__ __iand__ __ior__ __ixor__ ceil clamp clamp_min
clamp_max clip copysign cos cosh deg2rad digamma div
eq erf erfc erfinv exp exp2 expm1 floor floor_divide fmod frac ge gt le lt ne hypot lerp lgamma
log log10 log1p log2 logaddexp logical_and logical_not logical_or logical_xor logit maximum
minimum fmax fmin mul nan_to_num neg negative pow rad2deg reciprocal remainder round rsqrt
sigmoid sign sgn signbit sin sinh sqrt square sub rsub tan tanh trunc where xlogy isnan isinf
isfinite isneginf isposinf real imag conj_physical _conj resolve_conj resolve_neg true_divide
heaviside gcd lcm relu relu6 gelu
silu mish elu selu celu leaky_relu hardtanh hardsigmoid hardswish softplus softshrink hardshrink
threshold log_sigmoid_forward sinc special_xlog1py polygamma i0 special_i0e special_i1
special_i1e special_ndtri special_erfcx special_entr special_log_ndtr nextafter softshrink
hardshrink rrelu_with_noise glu _prelu_kernel
"""

BACKWARD = """
threshold_backward sigmoid_backward tanh_backward gelu_backward silu_backward elu_backward
leaky_relu_backward hardtanh_backward softplus_backward mse_loss_backward nll_loss_backward
nll_loss2d_backward _log_softmax_backward_data _softmax_backward_data convolution_backward
max_pool2d_with_indices_backward avg_pool2d_backward native_batch_norm_backward
native_layer_norm_backward native_group_norm_backward embedding_dense_backward
binary_cross_entropy_backward hardsigmoid_backward hardswish_backward smooth_l1_loss_backward
huber_loss_backward _adaptive_avg_pool2d_backward log_sigmoid_backward mish_backward
logit_backward select_backward slice_backward diagonal_backward unfold_backward as_strided_scatter
native_dropout_backward softshrink_backward hardshrink_backward rrelu_with_noise_backward
glu_backward _prelu_kernel_backward soft_margin_loss_backward upsample_nearest1d_backward
upsample_nearest2d_backward upsample_nearest3d_backward upsample_linear1d_backward
upsample_bilinear2d_backward upsample_bicubic2d_backward upsample_trilinear3d_backward
_upsample_nearest_exact1d_backward _upsample_nearest_exact2d_backward
_upsample_nearest_exact3d_backward _upsample_bilinear2d_aa_backward
_upsample_bicubic2d_aa_backward reflection_pad1d_backward reflection_pad2d_backward
reflection_pad3d_backward replication_pad1d_backward replication_pad2d_backward
replication_pad3d_backward avg_pool3d_backward max_pool3d_with_indices_backward
adaptive_max_pool2d_backward adaptive_max_pool3d_backward _adaptive_avg_pool3d_backward
_cdist_backward _pdist_backward grid_sampler_2d_backward grid_sampler_3d_backward
affine_grid_generator_backward _embedding_bag_backward _embedding_bag_dense_backward
_embedding_bag_per_sample_weights_backward
_scaled_dot_product_flash_attention_for_cpu_backward masked_scatter_backward linear_backward
batch_norm_backward cummaxmin_backward _weight_norm_interface_backward mkldnn_rnn_layer_backward
"""

REDUCTIONS = """
sum mean prod max min amax amin argmax argmin all any std var std_mean var_mean norm
linalg_vector_norm logsumexp cumsum cumprod cummax cummin median nanmedian mode kthvalue topk
sort argsort count_nonzero nansum aminmax dist bincount histc searchsorted bucketize
logcumsumexp renorm
"""

LINALG = """
mm bmm matmul addmm addbmm baddbmm addmv addr mv dot vdot outer ger trace tril triu diag
diag_embed diagonal linalg_cross _linalg_det linalg_inv_ex _linalg_check_errors _linalg_svd
linalg_qr _linalg_eigh linalg_eig linalg_cholesky_ex _linalg_solve_ex linalg_solve_triangular
linalg_lstsq _linalg_slogdet linalg_matrix_exp linalg_lu_factor_ex linalg_lu linalg_lu_solve
linalg_pinv linalg_householder_product cholesky_solve cholesky_inverse triangular_solve _trilinear
"""

SHAPE_AND_INDEXING = """
view _unsafe_view reshape _reshape_alias expand permute transpose t squeeze unsqueeze flatten
unflatten select slice narrow split split_with_sizes chunk unbind cat stack flip roll repeat tile
movedim alias detach clone index_select gather scatter scatter_add scatter_reduce index index_put
index_add index_copy index_fill masked_fill masked_scatter masked_select take take_along_dim
nonzero _unique2 unique_dim unique_consecutive lift_fresh lift_fresh_copy _to_copy copy fill zero
ones_like zeros_like empty_like full_like new_zeros new_ones new_empty new_full new_empty_strided
view_as_real view_as_complex unfold constant_pad_nd reflection_pad1d reflection_pad2d
replication_pad1d replication_pad2d upsample_nearest2d upsample_bilinear2d pixel_shuffle
slice_scatter select_scatter diagonal_scatter as_strided col2im im2col rot90 block_diag
pixel_unshuffle reflection_pad3d replication_pad3d upsample_nearest1d upsample_nearest3d
unsafe_split unsafe_split_with_sizes unsafe_chunk isin put ldexp frexp contiguous
_fft_r2c _fft_c2c _fft_c2r one_hot
upsample_linear1d upsample_bicubic2d upsample_trilinear3d _upsample_nearest_exact1d
_upsample_nearest_exact2d _upsample_nearest_exact3d _upsample_bilinear2d_aa
_upsample_bicubic2d_aa affine_grid_generator grid_sampler_2d grid_sampler_3d
"""

NN = """
convolution _convolution embedding max_pool2d_with_indices avg_pool2d _adaptive_avg_pool2d
native_batch_norm _native_batch_norm_legit _native_batch_norm_legit_no_training native_layer_norm
native_group_norm _softmax _log_softmax nll_loss_forward nll_loss2d_forward mse_loss l1_loss
binary_cross_entropy binary_cross_entropy_with_logits smooth_l1_loss huber_loss kl_div
native_dropout bernoulli uniform normal rand_like randn_like randint_like exponential
random multinomial geometric cauchy log_normal poisson
avg_pool3d max_pool3d_with_indices adaptive_max_pool2d adaptive_max_pool3d _adaptive_avg_pool3d
soft_margin_loss _cdist_forward _pdist_forward _embedding_bag _embedding_bag_forward_only
_weight_norm_interface _scaled_dot_product_flash_attention_for_cpu mkldnn_rnn_layer
"""

ALLOWED_PACKETS = frozenset(
    " ".join((POINTWISE, BACKWARD, REDUCTIONS, LINALG, SHAPE_AND_INDEXING, NN)).split()
)


def refusal(op_name: Any, worker: str) -> OpNotAllowedError:
    """The error for an op that is not listed (raised by the client before it sends the op,
    and by the worker should one arrive anyway)."""
    return OpNotAllowedError(
        f"op {op_name!r} is not on {worker}'s allowlist of aten ops, so zsyft does not run it "
        "remotely (never listed: file I/O, RNG state, reflection, out= variants, and ops that "
        "expose raw memory such as resize_ and set_); compute it locally after .get()",
        worker=worker,
    )


def _has_out_argument(op: torch._ops.OpOverload) -> bool:
    return any(argument.is_out for argument in op._schema.arguments)


@functools.cache
def allowed_ops() -> dict[str, torch._ops.OpOverload]:
    """Every allowed overload by its wire name ("add.Tensor", "relu.default", "add_.Tensor")."""
    ops: dict[str, torch._ops.OpOverload] = {}
    for packet_name in ALLOWED_PACKETS:
        for name in (packet_name, packet_name + "_", packet_name + "_copy"):
            packet = getattr(torch.ops.aten, name, None)
            if packet is None:
                continue
            for overload_name in packet.overloads():
                op = getattr(packet, overload_name)
                if not _has_out_argument(op):
                    ops[op.__name__] = op
    return ops
