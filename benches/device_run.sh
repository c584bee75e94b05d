#!/usr/bin/env bash
# Runs segfeat's GPU tests and benches on a lent GPU machine in one call (the device tool;
# ../shared/device/README.md). That machine has the NVIDIA driver but no Vulkan loader
# and no Rust, so everything is built here and carried in .dev/ (git-ignored):
#
#   bash benches/device_run.sh --prepare    # here: builds, strips and fills .dev/
#   bash benches/device_run.sh SECONDS      # there, with carry [".dev"]
#
# .dev/ holds the stripped segfeat binary, the test and bench executables (as test-NAME,
# bench-NAME), and the .debs of the Vulkan loader and of glvnd (NVIDIA's Vulkan driver
# lives in libGLX_nvidia, which needs glvnd: without it the loader finds no driver). Logs
# go to $OUT (at most 8 files come back): info.log, tests.log, unet.log, kernels.log,
# classifier.log. Steps run most valuable first; each gets its own time limit and none
# runs past SECONDS after the start, so the logs always come back.
if [ "${1:-}" = "--prepare" ]; then
    set -euo pipefail
    mkdir -p .dev
    grep -qx '/.dev/' .git/info/exclude 2>/dev/null || echo /.dev/ >>.git/info/exclude
    if ! ls .dev/libvulkan1_*.deb >/dev/null 2>&1; then
        mkdir -p /tmp/amd64/partial
        o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
        apt-get $o update -qq
        (cd .dev && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
    fi
    cargo build --release --locked
    strip -o .dev/segfeat target/release/segfeat
    # The executables name the checkout they are built in (CARGO_MANIFEST_DIR).
    pwd >.dev/build-dir
    { cargo test --release --locked --no-run; cargo bench --locked --no-run; } 2>&1 |
        sed -n 's/^ *Executable \(kernels-tests\|benches\)\/\([a-z_0-9]*\)\.rs (\(.*\))$/\1 \2 \3/p' |
        while read -r kind name path; do
            # naga_validate and data use no GPU.
            case $name in naga_validate | data) continue ;; esac
            case $kind in kernels-tests) pre=test ;; *) pre=bench ;; esac
            strip -o ".dev/$pre-$name" "$path"
        done
    ls .dev
    du -sh .dev
    exit 0
fi
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
# The executables name the checkout they were built in (benches/torch_reference.py,
# shaders/, target/release/segfeat): make that path lead here.
build=$(cat .dev/build-dir)
[ -e "$build" ] || { mkdir -p "$(dirname "$build")" && ln -s "$PWD" "$build"; }
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
for tile in tiled rows; do
    step kernels.log 60 SEGFEAT_BENCH_REPS=5 SEGFEAT_BENCH_TILING=$tile ./.dev/bench-kernels
    step unet.log 45 SEGFEAT_BENCH_SIZES=128,256 SEGFEAT_BENCH_REPS=5 SEGFEAT_BENCH_TILING=$tile SEGFEAT_TORCH_PYTHON=none ./.dev/bench-unet
done
# Where the step's time goes, by GPU timestamps where the adapter has them.
step unet.log 45 SEGFEAT_BENCH_SIZES=256 SEGFEAT_BENCH_REPS=2 SEGFEAT_PROFILE=shapes SEGFEAT_TORCH_PYTHON=none ./.dev/bench-unet
step classifier.log 45 SEGFEAT_BENCH_PRESET=quick ./.dev/bench-classifier
step classifier.log 45 SEGFEAT_BENCH_PRESET=paper ./.dev/bench-classifier
# Two at once (what `experiment --jobs 2` does): if each keeps its time alone, the GPU
# has room for two runs and --jobs 2 would halve a protocol's time there too.
step classifier.log 45 SEGFEAT_BENCH_CHANNELS=25 bash -c './.dev/bench-classifier & ./.dev/bench-classifier; wait'
step classifier.log 60 SEGFEAT_BENCH_PRESET=paper SEGFEAT_BENCH_CHANNELS=25 bash -c './.dev/bench-classifier & ./.dev/bench-classifier; wait'
for t in tape segmentation protocol engine; do
    step tests.log 60 ./.dev/test-$t
done
echo "=== done $(date +%T)"
grep -h '^===\|x *[0-9.-]*$\|test result\|^test .*FAILED\|ceilings\|adapter:' "$out"/*.log | head -120
