#!/usr/bin/env bash
# The GPU checks of a session lent a GPU machine (through the device tool; never part of CI), as one script whose
# figures go to $OUT/gpu_check.txt:
#
#   1. what the machine is (GPU, torch);
#   2. Pyro's programs as they are, on CUDA: the four example-style programs of tests/pyro_style train from the
#      command line by path on device=cuda, and evaluate, sample, reconstruct (and, for the VAE, interpolate,
#      inpaint, upscale) run on their run directories;
#   3. bench/speed.py --device $DEV: seconds per epoch of the ways side by side, ratios to the fused floor;
#   4. bench/end_to_end.py --device $DEV: the README's `ppvae train` and `ppvae evaluate -k 100` of a conv
#      Fashion-MNIST run, each timed as a fresh command (E2E_ARGS passes it more options).
#
# It needs, beside the working tree: .whl/ (pyro-ppl, pyro-api, arviz, xarray-einstats, h5netcdf, mlxtend, tomli-w
# wheels for the machine's Python) and .gpudata/ (Fashion-MNIST's four IDX .gz files), both carried, both made by
# bench/gpu_prepare.sh (which says how to rehearse this script on the CPU first). Each step goes
# on after a failure of another and says so.
set -u
OUT=${OUT:-/tmp/gpu_check}
DEV=${DEV:-cuda}        # DEV=cpu SPEED=0 E2E_ARGS="--max-examples 20" bench/gpu_check.sh rehearses it without a GPU
SPEED=${SPEED:-1}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.txt") 2>&1
export PYTHONUNBUFFERED=1
step() { echo; echo "==== $* ($(date +%H:%M:%S))"; }

step "install"
PYTHON=${PYTHON:-python3}
$PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && $PYTHON -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target /tmp/site . \
    || { echo "install failed"; exit 1; }
export PYTHONPATH=/tmp/site
mkdir -p /usr/share/datasets/fashion-mnist && cp -n .gpudata/*.gz /usr/share/datasets/fashion-mnist/
PPVAE="$PYTHON -m ppvae"

step "machine"
nvidia-smi -L || true
$PYTHON -c "import torch, pyro, ppvae; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'pyro', pyro.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"

step "Pyro's programs on CUDA"
S=tests/pyro_style
W=$(mktemp -d)
COMMON="--quiet --set device=$DEV --set data.limit_train=2000 --set data.limit_test=500"
check() {  # check NAME CMD...: run a command, report ok/FAILED with its last line
    local name=$1; shift
    local started=$(date +%s%N)
    if out=$("$@" 2>&1); then
        printf '%-40s ok      %6d ms  %s\n' "$name" $(( ($(date +%s%N) - started) / 1000000 )) "$(echo "$out" | tail -1 | cut -c1-90)"
    else
        printf '%-40s FAILED  %s\n' "$name" "$(echo "$out" | tail -3 | tr '\n' ' ' | cut -c1-300)"
    fi
}
check "vae: train 5 epochs" $PPVAE train $COMMON --run-dir $W/vae --set model.name=$S/vae.py:VAE --set model.z_dim=16 --set train.epochs=5
check "vae: evaluate -k 100" $PPVAE evaluate $W/vae -k 100 --device $DEV
test -f $W/vae/report.json && $PYTHON -c "
import json; r = json.load(open('$W/vae/report.json')); print('   vae: test ELBO %.2f, %s %.2f (K=100)' % (r['elbo']['elbo'], r['iwae_log_likelihood']['of'], r['iwae_log_likelihood']['value']))"
for verb in sample reconstruct interpolate; do check "vae: $verb" $PPVAE $verb $W/vae --device $DEV; done
check "vae: inpaint" $PPVAE inpaint $W/vae --device $DEV --mask left -k 50 --max-examples 200
check "vae: upscale" $PPVAE upscale $W/vae --device $DEV --factor 2 -k 50 --max-examples 200
check "vae: resume" $PPVAE train --resume $W/vae --set train.epochs=6 --quiet
check "cvae: train 3 epochs" $PPVAE train $COMMON --run-dir $W/cvae --set model.name=$S/cvae.py:CVAE \
    --set model.z_dim=8 --set model.hidden_1=128 --set model.hidden_2=128 \
    --set "model.pre_trained_baseline_net={name=\"$S/baseline.py:BaselineNet\", hidden_1=64, hidden_2=64}" \
    --set data.transform=$S/quadrants.py:one_quadrant --set train.epochs=3
check "cvae: evaluate -k 20" $PPVAE evaluate $W/cvae -k 20 --device $DEV
check "cvae: sample" $PPVAE sample $W/cvae --device $DEV
check "ss-vae: train 3 epochs" $PPVAE train $COMMON --run-dir $W/ss --set model.name=$S/ss_vae.py:SSVAE \
    --set model.z_dim=16 --set "model.hidden_layers=[128]" --set model.config_enum=parallel \
    --set model.aux_loss_multiplier=46 --set 'data.transform=["flatten", "onehot"]' --set data.labeled=100 \
    --set objective.name=TraceEnum_ELBO --set objective.enumerate=parallel \
    --set 'losses=[{model="model_classify", guide="guide_classify"}]' --set train.labeled_batches=alternate \
    --set train.epochs=3
check "ss-vae: evaluate -k 20" $PPVAE evaluate $W/ss -k 20 --device $DEV
check "ss-vae: sample --label 3" $PPVAE sample $W/ss --label 3 --device $DEV
check "dmm: train 3 epochs" $PPVAE train --quiet --set device=$DEV --run-dir $W/dmm --set model.name=$S/dmm.py:DMM \
    --set model.input_dim=8 --set model.z_dim=4 --set model.emission_dim=16 --set model.transition_dim=16 \
    --set model.rnn_dim=16 --set data.name=$S/sequences.py:load --set data.transform=$S/sequences.py:mini_batch \
    --set train.batch_size=32 --set train.epochs=3
check "dmm: evaluate -k 5" $PPVAE evaluate $W/dmm -k 5 --device $DEV
check "dmm: sample" $PPVAE sample $W/dmm --device $DEV
check "factor_vae: train 2 epochs" $PPVAE train --quiet --set device=$DEV --run-dir $W/fv --set model.name=factor_vae \
    --set data.name=dsprites --set data.n=5000 --set model.latent_dim=10 --set train.epochs=2

step "tests that exercise CUDA"
$PYTHON -m pytest -q -p no:cacheprovider tests/test_graphs.py 2>&1 | tail -5

if [ "$SPEED" = 1 ]; then
    step "bench/speed.py --device $DEV (Fashion-MNIST 60k, 784-400-20; ratios to the fused floor)"
    $PYTHON bench/speed.py --device $DEV --batch-sizes 128 512 --repeats 3 --iwae-k 1000
fi

step "bench/end_to_end.py --device $DEV (the README's ppvae train; ppvae evaluate -k 100 of a conv Fashion-MNIST run)"
$PYTHON bench/end_to_end.py --device $DEV --json "$OUT/end_to_end.json" ${E2E_ARGS:-}

step "done"
