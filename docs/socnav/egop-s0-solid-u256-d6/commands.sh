#!/bin/bash
# SocNav lever: the solid view (docs/socnav.md; its rule was fixed before any result): the recipe on --env socnav-ego-solid, seeds 0 and 1 side
# by side, one core each; test --seed 0.
# --env socnav-ego-solid is in commit 455fda4 only (envs/socnav_ego_solid.py and envs/socnav.py); check them out first.
cd "$(dirname "$0")/../../.."  # the repository root
one() {
  s=$1; L=runs/socnav-solid-s$s
  export OMP_NUM_THREADS=1
  [ -f $L/rollouts/rollout_001999.npz ] || .venv/bin/python data/generation_script.py --env socnav-ego-solid --rollouts 2000 --rootdir $L/rollouts --threads 1 --max-steps 200 --seed $s > $L.log 2>&1 || return 1
  .venv/bin/python trainvae.py --logdir $L --dataset $L/rollouts --epochs 2 --batch-size 32 --lr 0.001 --workers 1 --salient-weight 10.0 --seed $s >> $L.log 2>&1 || return 1
  .venv/bin/python trainmdrnn.py --logdir $L --epochs 20 --batch-size 32 --seq-len 32 --seed $s >> $L.log 2>&1 || return 1
  [ -f $L/ctrl/best.tar ] || .venv/bin/python scripts/probe_socnav.py --logdir $L --episodes 150 --dagger 6 --teacher potential-field --units 256 --max-steps 200 --seed $s --save-c $L/ctrl/best.tar --out $L/imitation.json >> $L.log 2>&1 || return 1
  .venv/bin/python test_controller.py --logdir $L --episodes 100 --seed 0 --max-workers 1 --max-steps 200 --renderer 256x256 --z-mode mu > $L-test.log 2>&1
}
one 0 &
one 1 &
wait
echo done
