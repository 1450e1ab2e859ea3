"""engine.module.ParamModule: every layer's explicit get_config names each constructor argument
(backend and seed aside), rebuilds an equal layer, and the shared parameter handling behaves
the same for every layer."""
import inspect

import numpy as np
import pytest

from engine import LSTM, Dense, Embedding
from engine.module import ParamModule

LAYERS = [
    (LSTM, dict(input_size=3, hidden_size=5, num_layers=2, bias=False, batch_first=True,
                dropout=0.25, bidirectional=True, proj_size=2, cell_activation="relu",
                dtype="float64")),
    (Dense, dict(in_features=4, out_features=3, activation="tanh", bias=False,
                 dtype="float64")),
    (Embedding, dict(num_embeddings=7, embedding_dim=3, dtype="float64")),
]


@pytest.mark.parametrize("cls,args", LAYERS, ids=[c.__name__ for c, _ in LAYERS])
def test_get_config_names_every_constructor_argument_and_rebuilds_the_layer(cls, args):
    layer = cls(**args, seed=3)
    assert isinstance(layer, ParamModule)
    wanted = set(inspect.signature(cls.__init__).parameters) - {"self", "backend", "seed"}
    config = layer.get_config()
    assert set(config) == wanted
    assert config == args  # the non-default values given, dtype as its name
    twin = cls.from_config(config)
    assert twin.get_config() == config
    assert twin.param_shapes() == layer.param_shapes()


@pytest.mark.parametrize("cls,args", LAYERS, ids=[c.__name__ for c, _ in LAYERS])
def test_load_state_dict_is_all_or_nothing_for_every_layer(cls, args, rng):
    layer = cls(**args, seed=0)
    before = layer.state_dict()
    sd = {k: rng.standard_normal(v.shape) for k, v in before.items()}
    bad = dict(sd)
    first = next(iter(bad))
    bad[first] = np.full(bad[first].shape, np.nan)
    with pytest.raises(ValueError, match=f"{cls.__name__}.load_state_dict: '{first}' contains"):
        layer.load_state_dict(bad)
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    layer.load_state_dict(sd)
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])
