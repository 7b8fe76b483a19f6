import subprocess
import sys

import pytest

import mia.agents as agents
from mia.config import AGENT_NAMES
from mia.errors import ConfigError


def test_registry_names_are_the_config_agent_names_in_order():
    assert tuple(agents.AGENTS) == AGENT_NAMES


def test_qrdqn_needs_discrete_actions_and_the_rest_continuous():
    kinds = {name: agents.action_kind(name) for name in AGENT_NAMES}
    assert kinds == {"sac": "continuous", "ppo": "continuous", "ddpg": "continuous",
                     "ppo_lagrangian": "continuous", "qrdqn": "discrete"}


def test_importing_mia_agents_imports_no_torch_or_sb3():
    code = ("import sys, mia.agents; print([m for m in ('torch', 'stable_baselines3', "
            "'sb3_contrib', 'gymnasium') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", AGENT_NAMES)
def test_builder_resolves_each_agents_build_function(name):
    fn = agents.builder(name)
    assert fn.__module__ == agents.spec(name).module
    assert fn.__name__ == "build"


def test_unknown_agent_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown agent 'a2c'; known agents: sac, ppo"):
        agents.build("a2c", None, None, seed=0)
