#!/bin/bash
# SocNav lever: V's state head, trainvae.py --label-weight 20 (docs/socnav.md; its rule was fixed before any
# result); the recipe otherwise; seeds 0 and 1 side by side, one core each; test --seed 0. Used for both seeds.
cd "$(dirname "$0")/../../.."  # the repository root
one() {
  s=$1; L=runs/socnav-lab-s$s
  mkdir -p $L
  export OMP_NUM_THREADS=1
  [ -f $L/rollouts/rollout_001999.npz ] || .venv/bin/python data/generation_script.py --env socnav-ego --rollouts 2000 --rootdir $L/rollouts --threads 1 --max-steps 200 --seed $s > $L.log 2>&1 || return 1
  echo "=== V $(date)" >> $L.log
  .venv/bin/python trainvae.py --logdir $L --dataset $L/rollouts --epochs 2 --batch-size 32 --lr 0.001 --workers 1 --salient-weight 10.0 --label-weight 20 --seed $s >> $L.log 2>&1 || return 1
  echo "=== M $(date)" >> $L.log
  .venv/bin/python trainmdrnn.py --logdir $L --epochs 20 --batch-size 32 --seq-len 32 --seed $s >> $L.log 2>&1 || return 1
  echo "=== fit $(date)" >> $L.log
  [ -f $L/ctrl/best.tar ] || .venv/bin/python scripts/probe_socnav.py --logdir $L --episodes 150 --dagger 6 --teacher potential-field --units 256 --max-steps 200 --seed $s --save-c $L/ctrl/best.tar --out $L/imitation.json >> $L.log 2>&1 || return 1
  echo "=== test $(date)" >> $L.log
  .venv/bin/python test_controller.py --logdir $L --episodes 100 --seed 0 --max-workers 1 --max-steps 200 --renderer 256x256 --z-mode mu > $L-test.log 2>&1
  echo "=== done $(date)" >> $L.log
}
one 0 &
one 1 &
wait
echo done
