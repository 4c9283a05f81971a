/** Where bundles live: node_modules/.cache/caas of this install. */
export declare const BUNDLE_CACHE: string;
/** The bundle of a caas entry point, built if none is current; undefined when it cannot be had (then start the sources through tsx). */
export declare function bundledEntry(entry: string, name: string): Promise<string | undefined>;
/** Marks a bundle as in use, so that pruning leaves it alone. */
export declare function touchBundle(file: string): void;
