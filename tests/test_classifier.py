"""The MLP classifier: the original's layer order, parameter names and softmax scores."""

import pytest
import torch

from vnp.models.classifier import MLPClassifier

ORIGINAL_KEYS = {  # models: VirNucPro's state dict (pipeline spec section 7)
    "hidden_layer.weight": (512, 3328), "hidden_layer.bias": (512,),
    "bn1.weight": (512,), "bn1.bias": (512,), "bn1.running_mean": (512,), "bn1.running_var": (512,),
    "bn1.num_batches_tracked": (), "output_layer.weight": (2, 512), "output_layer.bias": (2,),
}


@pytest.fixture
def model():
    torch.manual_seed(0)
    model = MLPClassifier(3328)
    with torch.no_grad():
        model.bn1.running_mean.normal_()
        model.bn1.running_var.uniform_(0.5, 2.0)
        model.bn1.weight.normal_()
        model.bn1.bias.normal_()
    return model


def test_state_dict_has_the_original_names_and_shapes(model):
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == ORIGINAL_KEYS


def test_scores_are_the_eval_mode_softmax_of_the_original_layers(model):
    x = torch.randn(7, 3328)
    p = model.state_dict()
    hidden = x @ p["hidden_layer.weight"].T + p["hidden_layer.bias"]
    hidden = (hidden - p["bn1.running_mean"]) / torch.sqrt(p["bn1.running_var"] + 1e-5)
    hidden = torch.relu(hidden * p["bn1.weight"] + p["bn1.bias"])
    expected = torch.softmax(hidden @ p["output_layer.weight"].T + p["output_layer.bias"], dim=1)
    model.train()  # scores must switch to running statistics and no dropout by itself
    scores = model.scores(x)
    assert not model.training
    assert scores.dtype == torch.float32 and scores.shape == (7, 2)
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores.sum(1), torch.ones(7))
    torch.testing.assert_close(model.scores(x), scores)  # deterministic: dropout is off


def test_other_feature_widths(model):
    small = MLPClassifier(160)
    assert small.scores(torch.randn(3, 160)).shape == (3, 2)
