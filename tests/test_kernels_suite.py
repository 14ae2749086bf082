"""The bottleneck suite: the harness's kernel rules on names as an H100 reports them, and the suite itself."""

import dataclasses
import json

import pytest

from benchmarks import kernels
from benchmarks.harness import kernel_groups
from benchmarks.harness.inprocess import CommandFailed

MUL = ("void at::native::elementwise_kernel<128, 2, at::native::gpu_kernel_impl_nocast<at::native::BinaryFunctor<"
       "c10::BFloat16, c10::BFloat16, c10::BFloat16, at::native::binary_internal::MulFunctor<float> > >(at::"
       "TensorIteratorBase&, at::native::BinaryFunctor<c10::BFloat16, c10::BFloat16, c10::BFloat16, at::native::"
       "binary_internal::MulFunctor<float> > const&)::{lambda(int)#1}>(int, {lambda(int)#1})")
# (name as torch's profiler reports it on an H100 or on the CPU, category for ESM-2)
NAMES = [
    ("nvjet_tst_256x128_64x4_1x2_h_bz_coopA_bias_TNT", "gemm"),
    ("nvjet_tst_192x192_64x4_2x1_v_bz_coopB_gelu_bias_TNT", "gemm"),  # an epilogue's name is still a GEMM
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x256x64_warpgroupsize2x1x1_execute_segment_k_off_"
     "kernel__5x_cublas", "gemm"),
    ("void cutlass::Kernel2<cutlass_80_wmma_tensorop_bf16_s161616gemm_bf16_16x16_128x2_tn_align8>(cutlass_80_wmma_"
     "tensorop_bf16_s161616gemm_bf16_16x16_128x2_tn_align8::Params)", "gemm"),
    ("void cublasLt::splitKreduce_kernel<32, 16, int, float, __nv_bfloat16, float, __nv_bfloat16, true, false, "
     "false>(cublasLt::cublasSplitKParams<float>, float const*, __nv_bfloat16 const*, __nv_bfloat16*)", "gemm"),
    ("aten::addmm", "gemm"),
    ("aten::_addmm_activation", "gemm"),
    ("fmha_cutlassF_bf16_aligned_64x64_rf_sm80(PyTorchMemEffAttention::AttentionKernel<cutlass::bfloat16_t, "
     "cutlass::arch::Sm80, true, 64, 64, 64, true, true>::Params)", "attention"),
    ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128, 128, 4, false, false, cutlass::"
     "bfloat16_t, Flash_kernel_traits<64, 128, 128, 4, cutlass::bfloat16_t> >, false, false, false, false, false, "
     "true, false, false>(pytorch_flash::Flash_fwd_params)", "attention"),
    ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_3_64x64x64_4x1x1_kernel0_0", "attention"),
    ("_packed_attention_kernel", "attention"),
    ("aten::_scaled_dot_product_flash_attention_for_cpu", "attention"),
    (MUL, "rotary"),
    ("void at::native::elementwise_kernel<128, 2, at::native::gpu_kernel_impl_nocast<at::native::(anonymous "
     "namespace)::addcmul_cuda_kernel(at::TensorIteratorBase&, c10::Scalar const&)::{lambda()#2}::operator()() "
     "const::{lambda(c10::BFloat16, c10::BFloat16, c10::BFloat16)#1}>(at::TensorIteratorBase&)", "rotary"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::cos_kernel_cuda(at::TensorIteratorBase&)::"
     "{lambda()#2}::operator()() const::{lambda(float)#1}, std::array<char*, 2ul> >(int)", "rotary"),
    ("_rotary_qk_kernel", "rotary"),
    ("aten::addcmul_", "rotary"),
    ("void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<c10::BFloat16, float, false>(int, "
     "float, c10::BFloat16 const*, c10::BFloat16 const*, c10::BFloat16 const*, float*, float*, c10::BFloat16*)",
     "normalisation"),
    ("_add_layer_norm_kernel", "normalisation"),
    ("aten::native_layer_norm", "normalisation"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::GeluCUDAKernelImpl(at::TensorIteratorBase&, "
     "at::native::GeluType)::{lambda()#2}::operator()() const::{lambda(c10::BFloat16)#1}, std::array<char*, 2ul> "
     ">(int)", "activation"),
    ("_geglu_kernel", "activation"),
    ("void at::native::index_elementwise_kernel<128, 4, at::native::gpu_index_kernel<at::native::index_copy_kernel_"
     "impl<at::native::OpaqueType<2> >(at::TensorIterator&, long, long, long)::{lambda(char*, char const*, long)#1}"
     ">(at::TensorIteratorBase&)>", "scatter_gather"),
    ("void at::native::index_elementwise_kernel<128, 4, at::native::gpu_index_kernel<at::native::index_kernel_impl<"
     "at::native::OpaqueType<2> >(at::TensorIteratorBase&, c10::ArrayRef<long>)>", "scatter_gather"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<c10::BFloat16>, std::array<char*, "
     "1ul> >(int, at::native::FillFunctor<c10::BFloat16>, std::array<char*, 1ul>)", "scatter_gather"),
    ("aten::index_copy_", "scatter_gather"),
    ("Memcpy DtoD (Device -> Device)", "copy"),
    ("void at::native::elementwise_kernel<128, 4, at::native::gpu_kernel_impl_nocast<at::native::direct_copy_"
     "kernel_cuda(at::TensorIteratorBase&)::{lambda()#3}::operator()() const::{lambda(c10::BFloat16)#1}>(at::"
     "TensorIteratorBase&)>", "copy"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<c10::BFloat16>, std::array<"
     "char*, 3ul> >(int, at::native::CUDAFunctor_add<c10::BFloat16>, std::array<char*, 3ul>)", "residual"),
    ("aten::add", "residual"),
    ("void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::MeanOps<float, float, float, "
     "float>, unsigned int, float, 4, 4> >(at::native::ReduceOp<float, at::native::MeanOps<float, float, float, "
     "float>, unsigned int, float, 4, 4>)", "other"),
]


@pytest.mark.parametrize("name, expected", NAMES, ids=[f"{i}-{c}" for i, (_, c) in enumerate(NAMES)])
def test_kernel_names_fall_into_their_category(name, expected):
    assert kernel_groups.category(name, "esm2") == expected


def test_a_multiply_is_esm2s_rotary_but_dnaberts_gelu_gate():
    assert kernel_groups.category(MUL, "esm2") == "rotary"
    assert kernel_groups.category(MUL, "dnabert") == "activation"
    assert kernel_groups.category("aten::mul", "dnabert") == "activation"


def profile_document(kernel_seconds, tokens=1000, forward=1.0, gemm=0.75, used="eager"):
    return {"model": "esm2", "kernels_used": used, "kernels_fallback": None, "tokens": tokens,
            "tokens_per_second": tokens / forward, "gemm_only_tokens_per_second": tokens / gemm,
            "fraction_of_gemm_ceiling": gemm / forward,
            "profile": {"activity": "cuda", "kernels": [{"name": n, "calls": 1, "seconds": s}
                                                        for n, s in kernel_seconds.items()]}}


def test_the_summary_shares_costs_and_names_what_to_fuse_next():
    summary = kernel_groups.summary(profile_document({"nvjet_tst_a": 0.5, "nvjet_tst_b": 0.2, MUL: 0.2,
                                                     "aten::add": 0.05, "mystery_kernel": 0.05}))
    assert summary["seconds"]["gemm"] == pytest.approx(0.7)
    assert summary["share"]["rotary"] == pytest.approx(0.2) and summary["share"]["attention"] == 0
    assert sum(summary["share"].values()) == pytest.approx(1)
    assert summary["ns_per_token"]["gemm"] == pytest.approx(0.7 / 1000 * 1e9)
    assert summary["fuse_next"] == "rotary" and summary["unknown"] == ["mystery_kernel"]


# -- the suite ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def profiles():
    """The ci scale's profiles, from the real `vnp profile` (tiny models, CPU), made once."""
    return kernels._Profiles().setup_cache()


def test_the_ci_scale_profiles_every_model_eagerly_and_tracks_costs(profiles):
    for model in kernels.MODELS:
        share, time, ceiling = kernels.KernelShare(), kernels.KernelTime(), kernels.GemmCeiling()
        glue = 0.0
        for category in kernel_groups.GLUE:
            share.setup(profiles, model, "eager", category)
            glue += share.track_share(profiles, model, "eager", category)
        time.setup(profiles, model, "eager", "gemm")
        gemm = time.track_ns_per_token(profiles, model, "eager", "gemm")
        summary = profiles[(model, "eager")]
        assert summary["activity"] == "cpu" and gemm > 0
        assert glue == pytest.approx(1 - summary["share"]["gemm"])
        ceiling.setup(profiles, model, "eager")
        assert 0 <= ceiling.track_shortfall(profiles, model, "eager") < 1
        assert ceiling.track_seconds_per_million_tokens(profiles, model, "eager") > 0
        with pytest.raises(NotImplementedError, match="need a GPU"):
            ceiling.setup(profiles, model, "fused")


def test_a_commit_without_vnp_profile_is_na(monkeypatch, tmp_path):
    def old(command, *options):
        raise NotImplementedError(f"this commit's vnp has no '{command}' command")

    monkeypatch.setattr(kernels, "require", old)
    summary = kernels.profile("esm2", "eager", tmp_path)
    with pytest.raises(NotImplementedError, match="no 'profile' command"):
        kernels.GemmCeiling().setup({("esm2", "eager"): summary}, "esm2", "eager")


def test_fused_kernels_that_fell_back_are_na_and_a_failed_profile_fails(monkeypatch, tmp_path):
    monkeypatch.setattr(kernels, "SCALE", dataclasses.replace(kernels.SCALE, on_gpu=True))
    monkeypatch.setattr(kernels, "require", lambda *args: None)

    def fell_back(*argv):
        out = argv[argv.index("--out") + 1]
        document = {**profile_document({"nvjet": 1.0}), "kernels_fallback": "Triton is not installed"}
        with open(out, "w") as handle:
            json.dump(document, handle)

    monkeypatch.setattr(kernels, "run_vnp", fell_back)
    summary = kernels.profile("esm2", "fused", tmp_path)
    with pytest.raises(NotImplementedError, match="fell back to eager: Triton is not installed"):
        kernels.KernelShare().setup({("esm2", "fused"): summary}, "esm2", "fused", "rotary")

    def failing(*argv):
        raise CommandFailed("vnp profile esm2: exit 1: out of memory")

    monkeypatch.setattr(kernels, "run_vnp", failing)
    summary = kernels.profile("esm2", "eager", tmp_path)
    with pytest.raises(RuntimeError, match="out of memory"):
        kernels.GemmCeiling().setup({("esm2", "eager"): summary}, "esm2", "eager")
