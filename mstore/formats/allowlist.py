"""The callables a pickle may import and still be called known-safe: one reviewed table of exact pairs.

A pickle names what it imports as (module, qualified name); `find_class` imports the module and, under
protocol 4 and later, walks a dotted qualified name attribute by attribute. An entry here is one exact
pair, as `find_class` receives it after the protocol-2 renames of `_compat_pickle` (`__builtin__` ->
`builtins`), never a package or a prefix: `joblib.numpy_pickle` + `os.system` is not
`joblib.numpy_pickle.NumpyArrayWrapper`, and `sklearn` + `pipeline.Pipeline` is not `sklearn.pipeline` +
`Pipeline` either (the walk may land elsewhere).

How the table was built: `scripts/build_allowlist.py` fits every scikit-learn estimator that fits on a tiny
data set with its defaults, a few pipelines and text vectorisers, numpy and scipy values, and torch state
dicts, dumps each with pickle (protocols 2-5) and joblib (with and without `compress=`), and records what
`find_class` is asked for. Each entry was then read: classes whose construction and `__setstate__` only
store data, and the reconstructors numpy, scipy and torch register for their own types. What is NOT here,
on purpose: anything that reads or writes files (`numpy.load`, `numpy.memmap`, `numpy.savetxt`,
`joblib.load`/`dump`), joblib's legacy `NDArrayWrapper`/`ZNDArrayWrapper` (they load a sidecar file with
`allow_pickle=True`), loky and multiprocessing, `builtins.getattr`/`eval`/`exec`/`__import__`, and
`functools.partial` & co. (they call whatever they are given).

Extending it for your own classes: `mstore save --allow mypkg.models:MyEstimator` (repeatable; `module:name`,
or `module.Name` when the name has no dot), `Repository.save(..., allow=["mypkg.models:MyEstimator"])`, or
one entry a line in a file named by `MSTORE_ALLOW_FILE`. The extra entries are recorded in the version's
metadata (`mstore.pickle_allowed`) and in the store's local verdict record (content/verdict.py), which
alone is believed: a version from a remote or an archive is judged by this table and `MSTORE_ALLOW_FILE`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

_BY_MODULE: dict[str, tuple[str, ...]] = {
    "builtins": (
        "bytearray",
        "bytes",
        "bool",
        "complex",
        "dict",
        "float",
        "frozenset",
        "int",
        "list",
        "object",
        "range",
        "set",
        "slice",
        "str",
        "tuple",
    ),
    "collections": ("Counter", "OrderedDict", "defaultdict", "deque"),
    "copyreg": ("_reconstructor",),
    "_codecs": ("encode",),
    "datetime": ("date", "datetime", "time", "timedelta", "timezone"),
    "decimal": ("Decimal",),
    "fractions": ("Fraction",),
    "uuid": ("UUID",),
    "numpy": (
        "dtype",
        "ndarray",
        "mean",
        "bool_",
        "complex64",
        "complex128",
        "float16",
        "float32",
        "float64",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "intp",
        "longdouble",
        "str_",
        "bytes_",
        "object_",
        "datetime64",
        "timedelta64",
    ),
    "numpy._core.multiarray": ("_reconstruct", "scalar"),
    "numpy.core.multiarray": ("_reconstruct", "scalar"),
    "numpy._core.numeric": ("_frombuffer",),
    "numpy.core.numeric": ("_frombuffer",),
    "numpy.ma": ("MaskedArray",),
    "numpy.ma.core": ("_mareconstruct", "MaskedArray"),
    "numpy.random._pickle": ("__bit_generator_ctor", "__generator_ctor", "__randomstate_ctor"),
    "numpy.random._mt19937": ("MT19937",),
    "numpy.random._pcg64": ("PCG64", "PCG64DXSM"),
    "numpy.random._philox": ("Philox",),
    "numpy.random._sfc64": ("SFC64",),
    "numpy.random.bit_generator": ("SeedSequence", "__pyx_unpickle_SeedSequence"),
    "numpy.random.mtrand": ("RandomState",),
    "scipy._lib.array_api_compat.numpy._aliases": ("asarray",),
    "scipy.interpolate._bsplines": ("BSpline",),
    "scipy.sparse._coo": ("coo_matrix", "coo_array"),
    "scipy.sparse._csc": ("csc_matrix", "csc_array"),
    "scipy.sparse._csr": ("csr_matrix", "csr_array"),
    "scipy.sparse._lil": ("lil_matrix",),
    "scipy.sparse._dok": ("dok_matrix",),
    "scipy.sparse._bsr": ("bsr_matrix",),
    "scipy.sparse._dia": ("dia_matrix",),
    "joblib.numpy_pickle": ("NumpyArrayWrapper",),
    "torch._utils": ("_rebuild_tensor_v2", "_rebuild_parameter"),
    "torch": (
        "BFloat16Storage",
        "BoolStorage",
        "ByteStorage",
        "CharStorage",
        "DoubleStorage",
        "FloatStorage",
        "HalfStorage",
        "IntStorage",
        "LongStorage",
        "ShortStorage",
    ),
    "sklearn._loss._loss": (
        "CyHalfBinomialLoss",
        "CyHalfPoissonLoss",
        "CyHalfSquaredError",
        "CyHalfTweedieLossIdentity",
    ),
    "sklearn._loss.link": (
        "IdentityLink",
        "Interval",
        "LogLink",
        "LogitLink",
    ),
    "sklearn._loss.loss": (
        "HalfBinomialLoss",
        "HalfPoissonLoss",
        "HalfSquaredError",
        "HalfTweedieLossIdentity",
    ),
    "sklearn.calibration": (
        "CalibratedClassifierCV",
        "_CalibratedClassifier",
        "_SigmoidCalibration",
    ),
    "sklearn.cluster._affinity_propagation": ("AffinityPropagation",),
    "sklearn.cluster._agglomerative": (
        "AgglomerativeClustering",
        "FeatureAgglomeration",
    ),
    "sklearn.cluster._bicluster": (
        "SpectralBiclustering",
        "SpectralCoclustering",
    ),
    "sklearn.cluster._birch": (
        "Birch",
        "_CFNode",
        "_CFSubcluster",
    ),
    "sklearn.cluster._bisect_k_means": (
        "BisectingKMeans",
        "_BisectingTree",
    ),
    "sklearn.cluster._dbscan": ("DBSCAN",),
    "sklearn.cluster._hdbscan.hdbscan": ("HDBSCAN",),
    "sklearn.cluster._kmeans": (
        "KMeans",
        "MiniBatchKMeans",
        "_kmeans_single_lloyd",
    ),
    "sklearn.cluster._mean_shift": ("MeanShift",),
    "sklearn.cluster._optics": ("OPTICS",),
    "sklearn.cluster._spectral": ("SpectralClustering",),
    "sklearn.compose._column_transformer": ("ColumnTransformer",),
    "sklearn.compose._target": ("TransformedTargetRegressor",),
    "sklearn.covariance._elliptic_envelope": ("EllipticEnvelope",),
    "sklearn.covariance._empirical_covariance": ("EmpiricalCovariance",),
    "sklearn.covariance._graph_lasso": (
        "GraphicalLasso",
        "GraphicalLassoCV",
    ),
    "sklearn.covariance._robust_covariance": ("MinCovDet",),
    "sklearn.covariance._shrunk_covariance": (
        "LedoitWolf",
        "OAS",
        "ShrunkCovariance",
    ),
    "sklearn.cross_decomposition._pls": ("PLSRegression",),
    "sklearn.decomposition._dict_learning": (
        "DictionaryLearning",
        "MiniBatchDictionaryLearning",
    ),
    "sklearn.decomposition._factor_analysis": ("FactorAnalysis",),
    "sklearn.decomposition._fastica": ("FastICA",),
    "sklearn.decomposition._incremental_pca": ("IncrementalPCA",),
    "sklearn.decomposition._kernel_pca": ("KernelPCA",),
    "sklearn.decomposition._lda": ("LatentDirichletAllocation",),
    "sklearn.decomposition._nmf": (
        "MiniBatchNMF",
        "NMF",
    ),
    "sklearn.decomposition._pca": ("PCA",),
    "sklearn.decomposition._sparse_pca": (
        "MiniBatchSparsePCA",
        "SparsePCA",
    ),
    "sklearn.decomposition._truncated_svd": ("TruncatedSVD",),
    "sklearn.discriminant_analysis": (
        "LinearDiscriminantAnalysis",
        "QuadraticDiscriminantAnalysis",
    ),
    "sklearn.dummy": (
        "DummyClassifier",
        "DummyRegressor",
    ),
    "sklearn.ensemble._bagging": (
        "BaggingClassifier",
        "BaggingRegressor",
    ),
    "sklearn.ensemble._forest": (
        "ExtraTreesClassifier",
        "ExtraTreesRegressor",
        "RandomForestClassifier",
        "RandomForestRegressor",
        "RandomTreesEmbedding",
    ),
    "sklearn.ensemble._gb": (
        "GradientBoostingClassifier",
        "GradientBoostingRegressor",
    ),
    "sklearn.ensemble._hist_gradient_boosting.binning": ("_BinMapper",),
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting": (
        "HistGradientBoostingClassifier",
        "HistGradientBoostingRegressor",
    ),
    "sklearn.ensemble._hist_gradient_boosting.predictor": ("TreePredictor",),
    "sklearn.ensemble._iforest": ("IsolationForest",),
    "sklearn.ensemble._weight_boosting": (
        "AdaBoostClassifier",
        "AdaBoostRegressor",
    ),
    "sklearn.feature_extraction._hash": ("FeatureHasher",),
    "sklearn.feature_extraction.image": ("PatchExtractor",),
    "sklearn.feature_extraction.text": (
        "CountVectorizer",
        "HashingVectorizer",
        "TfidfTransformer",
        "TfidfVectorizer",
    ),
    "sklearn.feature_selection._univariate_selection": (
        "GenericUnivariateSelect",
        "SelectFdr",
        "SelectFpr",
        "SelectFwe",
        "SelectKBest",
        "SelectPercentile",
        "f_classif",
    ),
    "sklearn.feature_selection._variance_threshold": ("VarianceThreshold",),
    "sklearn.gaussian_process._gpc": (
        "GaussianProcessClassifier",
        "_BinaryGaussianProcessClassifierLaplace",
    ),
    "sklearn.gaussian_process._gpr": ("GaussianProcessRegressor",),
    "sklearn.gaussian_process.kernels": (
        "ConstantKernel",
        "Product",
        "RBF",
    ),
    "sklearn.impute._base": (
        "MissingIndicator",
        "SimpleImputer",
    ),
    "sklearn.impute._knn": ("KNNImputer",),
    "sklearn.kernel_approximation": (
        "AdditiveChi2Sampler",
        "Nystroem",
        "PolynomialCountSketch",
        "RBFSampler",
        "SkewedChi2Sampler",
    ),
    "sklearn.kernel_ridge": ("KernelRidge",),
    "sklearn.linear_model._base": ("LinearRegression",),
    "sklearn.linear_model._bayes": (
        "ARDRegression",
        "BayesianRidge",
    ),
    "sklearn.linear_model._coordinate_descent": (
        "ElasticNet",
        "ElasticNetCV",
        "Lasso",
        "LassoCV",
    ),
    "sklearn.linear_model._glm.glm": (
        "PoissonRegressor",
        "TweedieRegressor",
    ),
    "sklearn.linear_model._huber": ("HuberRegressor",),
    "sklearn.linear_model._least_angle": (
        "Lars",
        "LarsCV",
        "LassoLars",
        "LassoLarsCV",
        "LassoLarsIC",
    ),
    "sklearn.linear_model._logistic": (
        "LogisticRegression",
        "LogisticRegressionCV",
    ),
    "sklearn.linear_model._omp": (
        "OrthogonalMatchingPursuit",
        "OrthogonalMatchingPursuitCV",
    ),
    "sklearn.linear_model._passive_aggressive": (
        "PassiveAggressiveClassifier",
        "PassiveAggressiveRegressor",
    ),
    "sklearn.linear_model._perceptron": ("Perceptron",),
    "sklearn.linear_model._quantile": ("QuantileRegressor",),
    "sklearn.linear_model._ransac": ("RANSACRegressor",),
    "sklearn.linear_model._ridge": (
        "Ridge",
        "RidgeCV",
        "RidgeClassifier",
        "RidgeClassifierCV",
    ),
    "sklearn.linear_model._sgd_fast": ("Hinge",),
    "sklearn.linear_model._stochastic_gradient": (
        "SGDClassifier",
        "SGDOneClassSVM",
        "SGDRegressor",
    ),
    "sklearn.linear_model._theil_sen": ("TheilSenRegressor",),
    "sklearn.manifold._classical_mds": ("ClassicalMDS",),
    "sklearn.manifold._isomap": ("Isomap",),
    "sklearn.manifold._locally_linear": ("LocallyLinearEmbedding",),
    "sklearn.manifold._mds": ("MDS",),
    "sklearn.manifold._spectral_embedding": ("SpectralEmbedding",),
    "sklearn.manifold._t_sne": ("TSNE",),
    "sklearn.metrics._dist_metrics": (
        "EuclideanDistance64",
        "newObj",
    ),
    "sklearn.mixture._bayesian_mixture": ("BayesianGaussianMixture",),
    "sklearn.mixture._gaussian_mixture": ("GaussianMixture",),
    "sklearn.naive_bayes": (
        "BernoulliNB",
        "CategoricalNB",
        "ComplementNB",
        "GaussianNB",
        "MultinomialNB",
    ),
    "sklearn.neighbors._classification": (
        "KNeighborsClassifier",
        "RadiusNeighborsClassifier",
    ),
    "sklearn.neighbors._graph": (
        "KNeighborsTransformer",
        "RadiusNeighborsTransformer",
    ),
    "sklearn.neighbors._kd_tree": (
        "KDTree",
        "newObj",
    ),
    "sklearn.neighbors._kde": ("KernelDensity",),
    "sklearn.neighbors._lof": ("LocalOutlierFactor",),
    "sklearn.neighbors._nca": ("NeighborhoodComponentsAnalysis",),
    "sklearn.neighbors._nearest_centroid": ("NearestCentroid",),
    "sklearn.neighbors._regression": (
        "KNeighborsRegressor",
        "RadiusNeighborsRegressor",
    ),
    "sklearn.neighbors._unsupervised": ("NearestNeighbors",),
    "sklearn.neural_network._multilayer_perceptron": (
        "MLPClassifier",
        "MLPRegressor",
    ),
    "sklearn.neural_network._rbm": ("BernoulliRBM",),
    "sklearn.neural_network._stochastic_optimizers": ("AdamOptimizer",),
    "sklearn.pipeline": (
        "FeatureUnion",
        "Pipeline",
    ),
    "sklearn.preprocessing._data": (
        "Binarizer",
        "KernelCenterer",
        "MaxAbsScaler",
        "MinMaxScaler",
        "Normalizer",
        "PowerTransformer",
        "QuantileTransformer",
        "RobustScaler",
        "StandardScaler",
    ),
    "sklearn.preprocessing._discretization": ("KBinsDiscretizer",),
    "sklearn.preprocessing._encoders": (
        "OneHotEncoder",
        "OrdinalEncoder",
    ),
    "sklearn.preprocessing._function_transformer": ("FunctionTransformer",),
    "sklearn.preprocessing._label": (
        "LabelBinarizer",
        "LabelEncoder",
    ),
    "sklearn.preprocessing._polynomial": (
        "PolynomialFeatures",
        "SplineTransformer",
    ),
    "sklearn.preprocessing._target_encoder": ("TargetEncoder",),
    "sklearn.semi_supervised._label_propagation": (
        "LabelPropagation",
        "LabelSpreading",
    ),
    "sklearn.svm._classes": (
        "LinearSVC",
        "LinearSVR",
        "NuSVC",
        "NuSVR",
        "OneClassSVM",
        "SVC",
        "SVR",
    ),
    "sklearn.tree._classes": (
        "DecisionTreeClassifier",
        "DecisionTreeRegressor",
        "ExtraTreeClassifier",
        "ExtraTreeRegressor",
    ),
    "sklearn.tree._tree": ("Tree",),
}

ALLOWED: frozenset[tuple[str, str]] = frozenset((m, n) for m, names in _BY_MODULE.items() for n in names)


def parse(entry: str) -> tuple[str, str]:
    """`module:qualname`, or `module.Name` (the last dot splits) -> (module, qualname); ValueError otherwise."""
    text = entry.strip()
    module, sep, name = text.partition(":")
    if not sep:
        module, _, name = text.rpartition(".")
    parts = module.split(".") + name.split(".")
    if not module or not name or not all(p.isidentifier() for p in parts):
        raise ValueError(f"not a global name (module:qualname or module.Name): {entry!r}")
    return module, name


def display(module: str, name: str) -> str:
    """How a pair is shown and recorded: `module.Name`, or `module:dotted.name` when the name has dots."""
    return f"{module}:{name}" if "." in name else f"{module}.{name}"


def from_display(text: str) -> tuple[str, str] | None:
    """The pair a recorded name stands for (None for `?` or anything unreadable)."""
    if ":" in text:
        module, _, name = text.partition(":")
        return (module, name) if module and name else None
    module, _, name = text.rpartition(".")
    return (module, name) if module and name else None


def extra_from_env() -> list[str]:
    """The entries of the file named by `MSTORE_ALLOW_FILE` (one a line; `#` comments), [] when unset."""
    path = os.environ.get("MSTORE_ALLOW_FILE")
    if not path:
        return []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def table(extra: Iterable[str] = ()) -> frozenset[tuple[str, str]]:
    """ALLOWED plus the user's extra entries (each parsed; a bad one raises ValueError)."""
    added = {parse(e) for e in extra}
    return ALLOWED | added if added else ALLOWED
