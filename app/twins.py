"""Exact numpy twins of fitted estimators' predict_proba, for the few records a request holds (and the
logistic regression's for any number).

scikit-learn pays per call for input validation, most of what a logistic regression costs on a
few records, and a forest hands each tree to joblib and re-checks the input per tree (for many records the
forest's twin only calls each tree itself, without joblib: see CompiledForest._tree_by_tree). The twins
below do the estimator's own arithmetic, in the same order, on arrays prepared at load time, without
that fixed cost (app/README.md, Performance, has the figures). `compile_twin` keeps a twin only when
it reproduces predict_proba bit for bit on the records it is given; anything else is served by the
estimator itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

# Above this many records the forest's own call is as fast: its fixed cost no longer counts; the softmax is then
# taken class by class.
SMALL_BATCH = 64
LEAF = -1


@dataclass(frozen=True)
class CompiledForest:
    forest: Any
    left: np.ndarray  # (trees, nodes): child node ids, LEAF at leaves and in padding
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    values: np.ndarray  # (trees, nodes, classes): normalised leaf values
    depth: int

    @property
    def classes_(self) -> np.ndarray:
        classes: np.ndarray = self.forest.classes_
        return classes

    def predict_proba(self, encoded: Any) -> np.ndarray:
        rows = np.asarray(encoded)
        if len(rows) > SMALL_BATCH:
            return self._tree_by_tree(rows)
        # The trees compare float32 inputs with float64 thresholds, as sklearn's Tree does.
        x = rows.astype(np.float32).astype(np.float64)
        trees = np.arange(len(self.left))[:, None]
        records = np.arange(len(x))[None, :]
        node = np.zeros((len(self.left), len(x)), dtype=np.intp)
        for _ in range(self.depth):
            left = self.left[trees, node]
            go_left = x[records, self.feature[trees, node]] <= self.threshold[trees, node]
            node = np.where(left == LEAF, node, np.where(go_left, left, self.right[trees, node]))
        total = np.zeros((len(x), self.values.shape[2]))
        for leaf_values in self.values[trees, node]:  # tree by tree, the forest's order of addition
            total += leaf_values
        total /= len(self.left)
        return total

    def _tree_by_tree(self, rows: np.ndarray) -> np.ndarray:
        """The forest's predict_proba for many records: each tree's own, added in the forest's order.

        Not through the forest's call: its joblib wrapper resets the process's warning filters while it runs and
        reads them when it starts, so two threads predicting at once saw an empty list now and then, and warned.
        """
        x = np.ascontiguousarray(rows, dtype=np.float32)
        total = np.zeros((len(x), len(self.forest.classes_)))
        for tree in self.forest.estimators_:
            total += tree.predict_proba(x, check_input=False)
        total /= len(self.forest.estimators_)
        return total


@dataclass(frozen=True)
class CompiledSoftmax:
    """A multinomial logistic regression: LinearClassifierMixin.decision_function, then softmax."""

    model: Any
    coef_t: np.ndarray
    intercept: np.ndarray

    @property
    def classes_(self) -> np.ndarray:
        classes: np.ndarray = self.model.classes_
        return classes

    def predict_proba(self, encoded: Any) -> np.ndarray:
        rows = np.asarray(encoded, dtype=np.float64)
        scores: np.ndarray = rows @ self.coef_t + self.intercept
        if len(rows) > SMALL_BATCH:
            return _softmax_by_class(scores)
        # The ufuncs' own reductions, as max() and sum() call them, without those methods' Python wrappers.
        scores -= np.maximum.reduce(scores, axis=1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= np.add.reduce(scores, axis=1, keepdims=True)
        return scores


def _softmax_by_class(scores: np.ndarray) -> np.ndarray:
    """The row-wise softmax above, one class's column at a time: numpy reduces a few values along each of many
    rows slowly, and adds whole columns fast. The same operations in the same order (the maximum, then each
    exponential, their sum from the first class to the last, the division), so the same bits."""
    columns = np.ascontiguousarray(scores.T)
    top = columns[0].copy()
    for column in columns[1:]:
        np.maximum(top, column, out=top)
    columns -= top
    np.exp(columns, out=columns)
    total = columns[0].copy()
    for column in columns[1:]:
        total += column
    columns /= total
    return np.ascontiguousarray(columns.T)


Twin = CompiledForest | CompiledSoftmax


def compile_twin(estimator: Any, probe: Any) -> Twin | None:
    """The estimator's numpy twin, if there is one and it is exact on `probe`."""
    twin: Twin | None = None
    if type(estimator) in (RandomForestClassifier, ExtraTreesClassifier) and estimator.n_outputs_ == 1:
        twin = _stack([tree.tree_ for tree in estimator.estimators_], estimator, estimator.n_classes_)
    elif type(estimator) is LogisticRegression and len(estimator.classes_) > 2:
        twin = CompiledSoftmax(estimator, estimator.coef_.T, estimator.intercept_)
    if twin is None or not np.array_equal(twin.predict_proba(probe), estimator.predict_proba(probe)):
        return None
    return twin


def _stack(trees: list[Any], forest: Any, classes: int) -> CompiledForest:
    width = max(tree.node_count for tree in trees)
    left = np.full((len(trees), width), LEAF, dtype=np.intp)
    right = np.full((len(trees), width), LEAF, dtype=np.intp)
    feature = np.zeros((len(trees), width), dtype=np.intp)
    threshold = np.zeros((len(trees), width))
    values = np.zeros((len(trees), width, classes))
    for index, tree in enumerate(trees):
        count = tree.node_count
        left[index, :count] = tree.children_left
        right[index, :count] = tree.children_right
        feature[index, :count] = np.maximum(tree.feature, 0)  # leaves say -2; never read
        threshold[index, :count] = tree.threshold
        values[index, :count] = _normalised(tree.value[:, 0, :classes])
    return CompiledForest(forest, left, right, feature, threshold, values, max(tree.max_depth for tree in trees))


def _normalised(value: np.ndarray) -> np.ndarray:
    # DecisionTreeClassifier.predict_proba's own steps, so the floats come out identical.
    normaliser = value.sum(axis=1)[:, np.newaxis]
    normaliser[normaliser == 0.0] = 1.0
    normalised: np.ndarray = value / normaliser
    return normalised
