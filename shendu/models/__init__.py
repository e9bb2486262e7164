"""The model zoo: every architecture of the notes, a name registry, and weights in torchvision's keys.

>>> import shendu.models as models
>>> net = models.get_model("resnet18", num_classes=10)
>>> sum(p.numel() for p in net.parameters())
11181642

``list_models()`` gives the names, ``model_descriptions()`` a one-line description of each;
``load_weights(model, path_or_dict)`` / ``save_weights(model, path)`` move weights in safetensors files or
dicts of arrays keyed like torchvision's ``state_dict``; ``model.fuse()`` folds BN into convolutions for
inference; ``model.summary(input_shape)`` prints the layer table.
"""

from shendu.models.registry import describe_model, get_model, list_models, model_descriptions, register_model  # noqa: F401
from shendu.models.weights import load_weights, save_weights  # noqa: F401
from shendu.models._base import ZooModel, fuse_conv_bn_pairs  # noqa: F401
from shendu.models.lenet import *  # noqa: F401,F403
from shendu.models.alexnet import *  # noqa: F401,F403
from shendu.models.vgg import *  # noqa: F401,F403
from shendu.models.nin import *  # noqa: F401,F403
from shendu.models.googlenet import *  # noqa: F401,F403
from shendu.models.resnet import *  # noqa: F401,F403
from shendu.models.resnet_keras import *  # noqa: F401,F403
from shendu.models.fmnist import *  # noqa: F401,F403
from shendu.models.recurrent import *  # noqa: F401,F403
from shendu.models import gan, vae  # noqa: F401,E402  (gan.Generator / gan.Discriminator: DCGAN)
from shendu.models.vae import VAE, ConvVAE  # noqa: F401,E402
