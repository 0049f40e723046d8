"""Driving the agent (V's encoder, M's LSTM, C) in real environments.

* :mod:`driving.agent`: what an agent is made of (:class:`~driving.agent.AgentSpec`) and one step of it
  for a batch of episodes (:class:`~driving.agent.Agent`).
* :mod:`driving.episode`: the episode loop, several episodes of one chunk in lock-step.
* :mod:`driving.pool`: the interface of a pool of episode workers and its local implementation
  (worker processes); :mod:`driving.ray_pool`: the same on a Ray cluster.
* :mod:`driving.display`: ``--display``, a window showing the newest controller drive.
* :mod:`driving.controller_policy`: the trained agent as a data-generation policy (iterative training).
"""
