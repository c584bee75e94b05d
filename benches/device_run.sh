#!/usr/bin/env bash
# Runs segfeat's GPU tests and benches on a lent GPU machine in one call (the device tool;
# ../shared/device/README.md says how to set it up). That machine has the NVIDIA driver
# but no Vulkan loader and no Rust, so everything is built here and carried in .dev/:
#
#   strip -o .dev/segfeat target/release/segfeat, and the same for each bench executable
#   (cargo bench --no-run) as .dev/bench-NAME and each test executable
#   (cargo test --release --no-run) as .dev/test-NAME, plus the libvulkan1 .deb
#
# (and libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2: the NVIDIA Vulkan driver
# lives in libGLX_nvidia and needs them), then run `bash benches/device_run.sh SECONDS`
# there with carry [".dev"]. Logs go to $OUT
# (at most 8 files come back): info.log, tests.log, unet.log, kernels.log, classifier.log.
# Steps run most valuable first; each gets its own time limit and none runs past SECONDS
# after the start, so the logs always come back.
set -u
out=${OUT:-/tmp/segfeat-device}
mkdir -p "$out"
deadline=$(($(date +%s) + ${1:-400}))
for f in .dev/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
if ! ./.dev/segfeat info >/dev/null 2>&1; then
    echo "no adapter with VK_DRIVER_FILES=$VK_DRIVER_FILES; trying the loader's own search"
    unset VK_DRIVER_FILES
    if ! ./.dev/segfeat info >/dev/null 2>&1; then
        VK_LOADER_DEBUG=error,warn,driver ./.dev/segfeat info 2>&1 | tail -20
        ldd /usr/local/nvidia/lib64/libGLX_nvidia.so.0 | grep 'not found'
        exit 1
    fi
fi
# The executables name the checkout they were built in (benches/torch_reference.py, shaders/).
[ -e /work/main ] || { mkdir -p /work && ln -s "$PWD" /work/main; }
# The command-line tests run the segfeat binary cargo built next to them.
mkdir -p target/release && cp .dev/segfeat target/release/segfeat

# step LOG SECONDS ENV... -- COMMAND...: run with the lesser of SECONDS and the time left.
step() {
    local log=$out/$1 secs=$2
    shift 2
    local left=$((deadline - $(date +%s)))
    [ "$secs" -gt "$left" ] && secs=$left
    if [ "$secs" -le 5 ]; then
        echo "=== skipped (no time left): $*" | tee -a "$log"
        return
    fi
    echo "=== $* (limit ${secs}s, $(date +%T))" | tee -a "$log"
    local t0=$(date +%s)
    timeout "$secs" env "$@" >>"$log" 2>&1
    echo "=== rc=$? after $(($(date +%s) - t0))s" | tee -a "$log"
}

{
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.total --format=csv
    ls /usr/local/nvidia/share/vulkan/icd.d/ /usr/share/vulkan/icd.d/ 2>&1
    python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())'
} >"$out/info.log" 2>&1
step info.log 30 ./.dev/segfeat info
step tests.log 90 ./.dev/test-kernels
step tests.log 60 ./.dev/test-gradients
step unet.log 150 SEGFEAT_BENCH_SIZES=64,128,256 SEGFEAT_BENCH_REPS=5 ./.dev/bench-unet
step kernels.log 90 SEGFEAT_BENCH_REPS=5 ./.dev/bench-kernels
step kernels.log 30 SEGFEAT_BENCH_REPS=5 SEGFEAT_BENCH_CONVS=1:16:256,16:16:256,48:16:256,32:32:128,96:32:128,64:64:64,192:64:64,128:128:32,384:128:32,256:256:16 ./.dev/bench-kernels
for tile in gpuwg 8x4 8x8 8x4wg 4x8; do
    step kernels.log 60 SEGFEAT_BENCH_REPS=5 SEGFEAT_BENCH_TILING=$tile ./.dev/bench-kernels
    step unet.log 45 SEGFEAT_BENCH_SIZES=128,256 SEGFEAT_BENCH_REPS=5 SEGFEAT_BENCH_TILING=$tile SEGFEAT_TORCH_PYTHON=none ./.dev/bench-unet
done
step classifier.log 45 SEGFEAT_BENCH_PRESET=quick ./.dev/bench-classifier
step classifier.log 45 SEGFEAT_BENCH_PRESET=paper ./.dev/bench-classifier
for t in tape segmentation protocol engine; do
    step tests.log 60 ./.dev/test-$t
done
echo "=== done $(date +%T)"
grep -h '^===\|x *[0-9.-]*$\|test result\|^test .*FAILED\|ceilings\|adapter:' "$out"/*.log | head -120
