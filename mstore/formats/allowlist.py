"""The callables a pickle may import and still be called safe: exact (module, name) pairs, one reviewed table.

A pickle runs whatever its GLOBAL / STACK_GLOBAL / INST opcodes name, so mstore calls a pickle safe only
when every global it names is listed here exactly: the module as `find_class` receives it (after the
protocol 0-2 renames of `_compat_pickle`, as the unpickler applies them), and the name as it is looked
up in that module; a dotted name (protocol 4 walks it attribute by attribute: `joblib.numpy_pickle` +
`os.system`) is allowed only when the dotted name itself is listed, which none is. Packages are never
trusted as a whole: numpy has `load`, `savetxt` and `memmap`, joblib has `dump` and loky, scipy has
`io`; each of those can run code or write files, so none is listed.

Built from the globals recorded while loading real pickles of: every scikit-learn estimator that fits
in a second (classifiers, regressors, transformers, clusterers)
was fitted and dumped with `pickle` (protocols 2, 4, 5) and `joblib` (with and without `compress=`),
plus pipelines (text, ColumnTransformer), numpy arrays of every dtype (object, structured, datetime),
scipy sparse matrices and arrays, and a torch state dict saved with `torch.save`; each load was recorded
through `find_class`. The scikit-learn part adds every class `sklearn.utils.all_estimators()` lists and
the classes of the helper modules fitted estimators pickle (trees, losses, kernels, distance metrics).

Not listed on purpose: joblib's legacy `NDArrayWrapper` (its `read` calls `numpy.load(...,
allow_pickle=True)` on a sidecar file no scan sees), `numpy.load`, `numpy.memmap`, anything from
`numpy.testing`, `numpy.f2py`, `builtins.getattr` / `eval` / `exec` / `open` / `__import__`, `os`,
`subprocess`, `posix`, `importlib`, `pickle`, `functools.partial`, `operator.*`.

Your own classes: the scanner takes extra exact (module, name) pairs (`scan_stream(..., extra=)`); the
`save --allow module.Name` option that passes them from the command line is not built yet (issue 21).
"""

from __future__ import annotations

from pathlib import Path

# The class whose BUILD makes joblib's unpickler read raw array bytes (numpy_pickle.NumpyUnpickler).
JOBLIB_ARRAY_WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")
# The callables a pickle uses to build an instance of a class named by its first argument.
RECONSTRUCTORS = {("copyreg", "_reconstructor"), ("copyreg", "__newobj__")}

_NUMPY_SCALARS = (
    "bool",
    "bool_",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "intc",
    "intp",
    "uintc",
    "uintp",
    "float16",
    "float32",
    "float64",
    "longdouble",
    "complex64",
    "complex128",
    "clongdouble",
    "str_",
    "bytes_",
    "void",
    "datetime64",
    "timedelta64",
    "object_",
    "half",
    "single",
    "double",
)
_SPARSE = ("bsr", "coo", "csc", "csr", "dia", "dok", "lil")
_TORCH_STORAGES = tuple(
    f"{kind}Storage"
    for kind in (
        "Float",
        "Double",
        "Half",
        "BFloat16",
        "Long",
        "Int",
        "Short",
        "Char",
        "Byte",
        "Bool",
        "ComplexFloat",
        "ComplexDouble",
        "QInt8",
        "QUInt8",
        "QInt32",
        "Untyped",
    )
)

ALLOWED: dict[str, tuple[str, ...]] = {
    "builtins": (
        "bool",
        "bytearray",
        "bytes",
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
    "collections": ("OrderedDict", "defaultdict", "deque", "Counter"),
    "copyreg": ("_reconstructor",),
    "_codecs": ("encode",),
    "datetime": ("date", "datetime", "time", "timedelta", "timezone"),
    "decimal": ("Decimal",),
    "fractions": ("Fraction",),
    "uuid": ("UUID",),
    "joblib.numpy_pickle": ("NumpyArrayWrapper",),
    "numpy": ("dtype", "ndarray", "mean", *_NUMPY_SCALARS),
    "numpy._core.multiarray": ("_reconstruct", "scalar"),
    "numpy.core.multiarray": ("_reconstruct", "scalar"),
    "numpy._core.numeric": ("_frombuffer",),
    "numpy.core.numeric": ("_frombuffer",),
    "numpy.random._pickle": ("__bit_generator_ctor", "__generator_ctor", "__randomstate_ctor"),
    "numpy.random._mt19937": ("MT19937",),
    "numpy.random._pcg64": ("PCG64", "PCG64DXSM"),
    "numpy.random._philox": ("Philox",),
    "numpy.random._sfc64": ("SFC64",),
    "numpy.random.bit_generator": ("SeedSequence", "__pyx_unpickle_SeedSequence"),
    "scipy._lib.array_api_compat.numpy._aliases": ("asarray",),
    "scipy.interpolate._bsplines": ("BSpline",),
    **{f"scipy.sparse._{k}": (f"{k}_matrix", f"{k}_array") for k in _SPARSE},
    "torch._utils": ("_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state"),
    "torch": (*_TORCH_STORAGES, "Size", "device", "float32", "float16", "bfloat16", "float64", "int64", "bool"),
    "sklearn._loss._loss": (
        "CyAbsoluteError",
        "CyExponentialLoss",
        "CyHalfBinomialLoss",
        "CyHalfGammaLoss",
        "CyHalfMultinomialLoss",
        "CyHalfPoissonLoss",
        "CyHalfSquaredError",
        "CyHalfTweedieLoss",
        "CyHalfTweedieLossIdentity",
        "CyHuberLoss",
        "CyLossFunction",
        "CyPinballLoss",
    ),
    "sklearn._loss.link": (
        "BaseLink",
        "HalfLogitLink",
        "IdentityLink",
        "Interval",
        "LogLink",
        "LogitLink",
        "MultinomialLogit",
    ),
    "sklearn._loss.loss": (
        "AbsoluteError",
        "ArrayAPILossMixin",
        "BaseLoss",
        "ExponentialLoss",
        "HalfBinomialLoss",
        "HalfBinomialLossArrayAPI",
        "HalfGammaLoss",
        "HalfMultinomialLoss",
        "HalfMultinomialLossArrayAPI",
        "HalfPoissonLoss",
        "HalfPoissonLossArrayAPI",
        "HalfSquaredError",
        "HalfTweedieLoss",
        "HalfTweedieLossIdentity",
        "HuberLoss",
        "PinballLoss",
    ),
    "sklearn.calibration": ("CalibratedClassifierCV", "_CalibratedClassifier", "_SigmoidCalibration"),
    "sklearn.cluster._affinity_propagation": ("AffinityPropagation",),
    "sklearn.cluster._agglomerative": ("AgglomerativeClustering", "FeatureAgglomeration"),
    "sklearn.cluster._bicluster": ("SpectralBiclustering", "SpectralCoclustering"),
    "sklearn.cluster._birch": ("Birch", "_CFNode", "_CFSubcluster"),
    "sklearn.cluster._bisect_k_means": ("BisectingKMeans", "_BisectingTree"),
    "sklearn.cluster._dbscan": ("DBSCAN",),
    "sklearn.cluster._hdbscan.hdbscan": ("HDBSCAN",),
    "sklearn.cluster._kmeans": ("KMeans", "MiniBatchKMeans", "_kmeans_single_lloyd"),
    "sklearn.cluster._mean_shift": ("MeanShift",),
    "sklearn.cluster._optics": ("OPTICS",),
    "sklearn.cluster._spectral": ("SpectralClustering",),
    "sklearn.compose._column_transformer": ("ColumnTransformer", "make_column_selector"),
    "sklearn.compose._target": ("TransformedTargetRegressor",),
    "sklearn.covariance._elliptic_envelope": ("EllipticEnvelope",),
    "sklearn.covariance._empirical_covariance": ("EmpiricalCovariance",),
    "sklearn.covariance._graph_lasso": ("GraphicalLasso", "GraphicalLassoCV"),
    "sklearn.covariance._robust_covariance": ("MinCovDet",),
    "sklearn.covariance._shrunk_covariance": ("LedoitWolf", "OAS", "ShrunkCovariance"),
    "sklearn.cross_decomposition._pls": ("CCA", "PLSCanonical", "PLSRegression", "PLSSVD"),
    "sklearn.decomposition._dict_learning": ("DictionaryLearning", "MiniBatchDictionaryLearning", "SparseCoder"),
    "sklearn.decomposition._factor_analysis": ("FactorAnalysis",),
    "sklearn.decomposition._fastica": ("FastICA",),
    "sklearn.decomposition._incremental_pca": ("IncrementalPCA",),
    "sklearn.decomposition._kernel_pca": ("KernelPCA",),
    "sklearn.decomposition._lda": ("LatentDirichletAllocation",),
    "sklearn.decomposition._nmf": ("MiniBatchNMF", "NMF"),
    "sklearn.decomposition._pca": ("PCA",),
    "sklearn.decomposition._sparse_pca": ("MiniBatchSparsePCA", "SparsePCA"),
    "sklearn.decomposition._truncated_svd": ("TruncatedSVD",),
    "sklearn.discriminant_analysis": ("LinearDiscriminantAnalysis", "QuadraticDiscriminantAnalysis"),
    "sklearn.dummy": ("DummyClassifier", "DummyRegressor"),
    "sklearn.ensemble._bagging": ("BaggingClassifier", "BaggingRegressor"),
    "sklearn.ensemble._forest": (
        "ExtraTreesClassifier",
        "ExtraTreesRegressor",
        "RandomForestClassifier",
        "RandomForestRegressor",
        "RandomTreesEmbedding",
    ),
    "sklearn.ensemble._gb": ("GradientBoostingClassifier", "GradientBoostingRegressor"),
    "sklearn.ensemble._hist_gradient_boosting.binning": ("_BinMapper",),
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting": (
        "HistGradientBoostingClassifier",
        "HistGradientBoostingRegressor",
    ),
    "sklearn.ensemble._hist_gradient_boosting.predictor": ("TreePredictor",),
    "sklearn.ensemble._iforest": ("IsolationForest",),
    "sklearn.ensemble._stacking": ("StackingClassifier", "StackingRegressor"),
    "sklearn.ensemble._voting": ("VotingClassifier", "VotingRegressor"),
    "sklearn.ensemble._weight_boosting": ("AdaBoostClassifier", "AdaBoostRegressor"),
    "sklearn.feature_extraction._dict_vectorizer": ("DictVectorizer",),
    "sklearn.feature_extraction._hash": ("FeatureHasher",),
    "sklearn.feature_extraction.image": ("PatchExtractor",),
    "sklearn.feature_extraction.text": ("CountVectorizer", "HashingVectorizer", "TfidfTransformer", "TfidfVectorizer"),
    "sklearn.feature_selection._from_model": ("SelectFromModel",),
    "sklearn.feature_selection._rfe": ("RFE", "RFECV"),
    "sklearn.feature_selection._sequential": ("SequentialFeatureSelector",),
    "sklearn.feature_selection._univariate_selection": (
        "GenericUnivariateSelect",
        "SelectFdr",
        "SelectFpr",
        "SelectFwe",
        "SelectKBest",
        "SelectPercentile",
    ),
    "sklearn.feature_selection._variance_threshold": ("VarianceThreshold",),
    "sklearn.frozen._frozen": ("FrozenEstimator",),
    "sklearn.gaussian_process._gpc": ("GaussianProcessClassifier", "_BinaryGaussianProcessClassifierLaplace"),
    "sklearn.gaussian_process._gpr": ("GaussianProcessRegressor",),
    "sklearn.gaussian_process.kernels": (
        "CompoundKernel",
        "ConstantKernel",
        "DotProduct",
        "ExpSineSquared",
        "Exponentiation",
        "GenericKernelMixin",
        "Hyperparameter",
        "Kernel",
        "KernelOperator",
        "Matern",
        "NormalizedKernelMixin",
        "PairwiseKernel",
        "Product",
        "RBF",
        "RationalQuadratic",
        "StationaryKernelMixin",
        "Sum",
        "WhiteKernel",
    ),
    "sklearn.impute._base": ("MissingIndicator", "SimpleImputer"),
    "sklearn.impute._knn": ("KNNImputer",),
    "sklearn.isotonic": ("IsotonicRegression",),
    "sklearn.kernel_approximation": (
        "AdditiveChi2Sampler",
        "Nystroem",
        "PolynomialCountSketch",
        "RBFSampler",
        "SkewedChi2Sampler",
    ),
    "sklearn.kernel_ridge": ("KernelRidge",),
    "sklearn.linear_model._base": ("LinearRegression",),
    "sklearn.linear_model._bayes": ("ARDRegression", "BayesianRidge"),
    "sklearn.linear_model._coordinate_descent": (
        "ElasticNet",
        "ElasticNetCV",
        "Lasso",
        "LassoCV",
        "MultiTaskElasticNet",
        "MultiTaskElasticNetCV",
        "MultiTaskLasso",
        "MultiTaskLassoCV",
    ),
    "sklearn.linear_model._glm.glm": ("GammaRegressor", "PoissonRegressor", "TweedieRegressor"),
    "sklearn.linear_model._huber": ("HuberRegressor",),
    "sklearn.linear_model._least_angle": ("Lars", "LarsCV", "LassoLars", "LassoLarsCV", "LassoLarsIC"),
    "sklearn.linear_model._logistic": ("LogisticRegression", "LogisticRegressionCV"),
    "sklearn.linear_model._omp": ("OrthogonalMatchingPursuit", "OrthogonalMatchingPursuitCV"),
    "sklearn.linear_model._passive_aggressive": ("PassiveAggressiveClassifier", "PassiveAggressiveRegressor"),
    "sklearn.linear_model._perceptron": ("Perceptron",),
    "sklearn.linear_model._quantile": ("QuantileRegressor",),
    "sklearn.linear_model._ransac": ("RANSACRegressor",),
    "sklearn.linear_model._ridge": ("Ridge", "RidgeCV", "RidgeClassifier", "RidgeClassifierCV"),
    "sklearn.linear_model._sgd_fast": ("Hinge",),
    "sklearn.linear_model._stochastic_gradient": ("SGDClassifier", "SGDOneClassSVM", "SGDRegressor"),
    "sklearn.linear_model._theil_sen": ("TheilSenRegressor",),
    "sklearn.manifold._classical_mds": ("ClassicalMDS",),
    "sklearn.manifold._isomap": ("Isomap",),
    "sklearn.manifold._locally_linear": ("LocallyLinearEmbedding",),
    "sklearn.manifold._mds": ("MDS",),
    "sklearn.manifold._spectral_embedding": ("SpectralEmbedding",),
    "sklearn.manifold._t_sne": ("TSNE",),
    "sklearn.metrics._dist_metrics": (
        "BrayCurtisDistance32",
        "BrayCurtisDistance64",
        "CanberraDistance32",
        "CanberraDistance64",
        "ChebyshevDistance32",
        "ChebyshevDistance64",
        "DiceDistance32",
        "DiceDistance64",
        "DistanceMetric",
        "DistanceMetric32",
        "DistanceMetric64",
        "EuclideanDistance32",
        "EuclideanDistance64",
        "HammingDistance32",
        "HammingDistance64",
        "HaversineDistance32",
        "HaversineDistance64",
        "JaccardDistance32",
        "JaccardDistance64",
        "KulsinskiDistance32",
        "KulsinskiDistance64",
        "MahalanobisDistance32",
        "MahalanobisDistance64",
        "ManhattanDistance32",
        "ManhattanDistance64",
        "MatchingDistance32",
        "MatchingDistance64",
        "MinkowskiDistance32",
        "MinkowskiDistance64",
        "PyFuncDistance32",
        "PyFuncDistance64",
        "RogersTanimotoDistance32",
        "RogersTanimotoDistance64",
        "RussellRaoDistance32",
        "RussellRaoDistance64",
        "SEuclideanDistance32",
        "SEuclideanDistance64",
        "SokalMichenerDistance32",
        "SokalMichenerDistance64",
        "SokalSneathDistance32",
        "SokalSneathDistance64",
        "newObj",
    ),
    "sklearn.mixture._bayesian_mixture": ("BayesianGaussianMixture",),
    "sklearn.mixture._gaussian_mixture": ("GaussianMixture",),
    "sklearn.model_selection._classification_threshold": ("FixedThresholdClassifier", "TunedThresholdClassifierCV"),
    "sklearn.model_selection._search": ("GridSearchCV", "RandomizedSearchCV"),
    "sklearn.multiclass": ("OneVsOneClassifier", "OneVsRestClassifier", "OutputCodeClassifier"),
    "sklearn.multioutput": ("ClassifierChain", "MultiOutputClassifier", "MultiOutputRegressor", "RegressorChain"),
    "sklearn.naive_bayes": ("BernoulliNB", "CategoricalNB", "ComplementNB", "GaussianNB", "MultinomialNB"),
    "sklearn.neighbors._ball_tree": (
        "BallTree",
        "BallTree32",
        "BallTree64",
        "BinaryTree32",
        "BinaryTree64",
        "NeighborsHeap32",
        "NeighborsHeap64",
        "NodeHeap",
    ),
    "sklearn.neighbors._classification": ("KNeighborsClassifier", "RadiusNeighborsClassifier"),
    "sklearn.neighbors._graph": ("KNeighborsTransformer", "RadiusNeighborsTransformer"),
    "sklearn.neighbors._kd_tree": (
        "BinaryTree32",
        "BinaryTree64",
        "KDTree",
        "KDTree32",
        "KDTree64",
        "NeighborsHeap32",
        "NeighborsHeap64",
        "NodeHeap",
        "newObj",
    ),
    "sklearn.neighbors._kde": ("KernelDensity",),
    "sklearn.neighbors._lof": ("LocalOutlierFactor",),
    "sklearn.neighbors._nca": ("NeighborhoodComponentsAnalysis",),
    "sklearn.neighbors._nearest_centroid": ("NearestCentroid",),
    "sklearn.neighbors._regression": ("KNeighborsRegressor", "RadiusNeighborsRegressor"),
    "sklearn.neighbors._unsupervised": ("NearestNeighbors",),
    "sklearn.neural_network._multilayer_perceptron": ("MLPClassifier", "MLPRegressor"),
    "sklearn.neural_network._rbm": ("BernoulliRBM",),
    "sklearn.neural_network._stochastic_optimizers": ("AdamOptimizer",),
    "sklearn.pipeline": ("FeatureUnion", "Pipeline"),
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
    "sklearn.preprocessing._encoders": ("OneHotEncoder", "OrdinalEncoder"),
    "sklearn.preprocessing._function_transformer": ("FunctionTransformer",),
    "sklearn.preprocessing._label": ("LabelBinarizer", "LabelEncoder", "MultiLabelBinarizer"),
    "sklearn.preprocessing._polynomial": ("PolynomialFeatures", "SplineTransformer"),
    "sklearn.preprocessing._target_encoder": ("TargetEncoder",),
    "sklearn.random_projection": ("GaussianRandomProjection", "SparseRandomProjection"),
    "sklearn.semi_supervised._label_propagation": ("LabelPropagation", "LabelSpreading"),
    "sklearn.semi_supervised._self_training": ("SelfTrainingClassifier",),
    "sklearn.svm._classes": ("LinearSVC", "LinearSVR", "NuSVC", "NuSVR", "OneClassSVM", "SVC", "SVR"),
    "sklearn.tree._classes": (
        "DecisionTreeClassifier",
        "DecisionTreeRegressor",
        "ExtraTreeClassifier",
        "ExtraTreeRegressor",
    ),
    "sklearn.tree._criterion": (
        "ClassificationCriterion",
        "Criterion",
        "Entropy",
        "Gini",
        "MAE",
        "MSE",
        "Poisson",
        "RegressionCriterion",
    ),
    "sklearn.tree._splitter": (
        "BestSparseSplitter",
        "BestSplitter",
        "RandomSparseSplitter",
        "RandomSplitter",
        "Splitter",
    ),
    "sklearn.tree._tree": (
        "BestFirstTreeBuilder",
        "DepthFirstTreeBuilder",
        "Tree",
        "TreeBuilder",
        "_AlphaPruner",
        "_CCPPruneController",
        "_PathFinder",
    ),
    "sklearn.utils._bunch": ("Bunch",),
}

_ALLOWED = frozenset((module, name) for module, names in ALLOWED.items() for name in names)


def is_allowed(module: str, name: str, extra: frozenset[tuple[str, str]] = frozenset()) -> bool:
    """Whether the global `module` / `name` (as find_class receives it, after the compat renames) is listed."""
    return (module, name) in _ALLOWED or (module, name) in extra


def parse_name(text: str) -> tuple[str, str]:
    """`pkg.mod.Name` -> ("pkg.mod", "Name"); `pkg.mod:Outer.Inner` -> ("pkg.mod", "Outer.Inner")."""
    text = text.strip()
    module, sep, name = text.partition(":") if ":" in text else text.rpartition(".")
    if not sep or not module or not name or any(not part.isidentifier() for part in (module + "." + name).split(".")):
        raise ValueError(f"not a global name: {text!r} (expected module.Name or module:Qualified.Name)")
    return module, name


def user_allowlist(items: list[str] | tuple[str, ...] | None) -> frozenset[tuple[str, str]]:
    """The user's extra names: each `module.Name`, or `@path` for a file of them (one a line, `#` comments)."""
    out: set[tuple[str, str]] = set()
    for item in items or ():
        if item.startswith("@"):
            try:
                lines = Path(item[1:]).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"cannot read the allow file {item[1:]!r}: {exc}") from None
            out.update(parse_name(line) for line in (raw.split("#", 1)[0].strip() for raw in lines) if line)
        else:
            out.add(parse_name(item))
    return frozenset(out)


def display(module: str, name: str) -> str:
    """`os.system`; `joblib.numpy_pickle:os.system` when the name is dotted (walked attribute by attribute)."""
    return f"{module}:{name}" if "." in name else f"{module}.{name}"
