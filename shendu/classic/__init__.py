"""Classic classifiers of the notes: k-nearest neighbours, linear SVM and softmax classifiers, PCA."""

from shendu.classic.knn import KNearestNeighbor, choose_k_by_cross_validation, pairwise_distances  # noqa: F401
from shendu.classic.linear import (  # noqa: F401
    LinearClassifier,
    LinearSVM,
    SoftmaxClassifier,
    softmax_loss_vectorized,
    svm_loss_vectorized,
)
from shendu.classic.pca import PCA, Whitening  # noqa: F401
