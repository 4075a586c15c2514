"""Entry point of the vla-qwen-vl distribution: registers the `qwen-vl` rewarder and its services.

Services on the GPU host: ``rewarder`` (vla serve-rewarder, the one arms talk to) in front
of ``vllm`` (the upstream vllm/vllm-openai image serving Qwen2.5-VL-7B-Instruct).

The ``cpu`` service profile (``plugins: {qwen-vl: {profile: cpu}}`` in vla.yaml) runs the same
two services on a host without a GPU: ``vllm`` becomes vLLM's CPU build (images/vllm-cpu)
serving a tiny, randomly initialised Qwen2-VL that it makes into the model volume at first
start, and the rewarder asks for that model. Same API, health check path, volume and waiting.
"""

from vla import hookimpl
from vla.specs import HealthCheck, Resources, RewarderSpec, ServiceProfile, ServiceSpec

from vla_qwen_vl.config import TEST_MODEL_PREFIX, QwenVLConfig

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
    # the weights pass through host memory while loading, and /dev/shm holds the image inputs
    resources=Resources(cpu=4, memory_gib=32),
)

# The cpu profile: vLLM's CPU build and a test model (random weights: the scores mean nothing).
CPU_IMAGE = "vla-vllm-cpu:latest"
CPU_MODEL = TEST_MODEL_PREFIX + "tiny-qwen2-vl"
CPU_MODEL_DIR = f"{HF_CACHE}/vla-test/tiny-qwen2-vl"
CPU_MAX_MODEL_LEN = 512

def _rewarder_command(model: str) -> tuple[str, ...]:
    return ("vla", "serve-rewarder", "--rewarder", "qwen-vl", "--host", "0.0.0.0", "--port", str(REWARDER_PORT),
            "--set", f"base_url=http://vllm:{VLLM_PORT}/v1", "--set", f"model={model}")


REWARDER = ServiceSpec(
    name="rewarder",
    image="vla-runtime:latest",
    build_context="images/runtime",
    command=_rewarder_command(MODEL),
    port=REWARDER_PORT,
    gpus=0,
    healthcheck=HealthCheck.http(REWARDER_PORT, "/healthz", start_period_s=300.0),
    depends_on=("vllm",),
)




CPU_PROFILE = ServiceProfile(
    name="cpu",
    description="vLLM's CPU build serving a tiny random Qwen2-VL test model (no GPU; scores mean nothing)",
    services={
        "vllm": dict(
            image=CPU_IMAGE,
            build_context="images/vllm-cpu",
            command=(
                "--make-test-model", "qwen2-vl",
                "--model", CPU_MODEL_DIR,
                "--served-model-name", CPU_MODEL,
                "--host", "0.0.0.0",
                "--port", str(VLLM_PORT),
                "--max-model-len", str(CPU_MAX_MODEL_LEN),
                "--limit-mm-per-prompt", '{"image": 4}',
                "--dtype", "float32",
                # no torch.compile: it needs a C++ compiler in the image and minutes on two cores
                "--enforce-eager",
                "--max-logprobs", "20",
            ),
            gpus=0,
            gpu_memory_fraction=None,
            # ~40 s to load on two cores; the first start also makes the test model
            healthcheck=HealthCheck.http(VLLM_PORT, "/v1/models", interval_s=3.0, timeout_s=5.0, retries=5,
                                         start_period_s=300.0),
            # TORCHDYNAMO_DISABLE: vLLM's few torch.compile'd helpers run eagerly (inductor needs g++)
            environment={"HF_HOME": HF_CACHE, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1",
                         "TORCHDYNAMO_DISABLE": "1"},
            resources=Resources(cpu=2, memory_gib=8),
        ),
        "rewarder": dict(command=_rewarder_command(CPU_MODEL)),
    },
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
            profiles=(CPU_PROFILE,),
        )
    )
